"""``b24-connector status``: what an operator needs at 3 a.m., on one screen.

The local part (journal, conflicts, bad records, outbox, tokens) never needs the portal;
the portal part (bindings, queue depth) is shown when the portal answers and otherwise
says why not, so ``status`` works in an outage.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from connector.core.mapping_model import MappingSet

from connector.service.output import emit_json


def local_status(
    engine: Engine, host: str | None, mappings: MappingSet | None = None
) -> dict[str, Any]:
    from connector.adapters.store.backlog import (
        open_conflicts,
        open_record_errors,
        unfinished_batches,
    )
    from connector.adapters.store.outbox import OutboxStore
    from connector.adapters.store.outbox_triggers import trigger_problems
    from connector.adapters.store.tokens import token_facts

    with engine.connect() as conn:
        out: dict[str, Any] = {
            "journal_unfinished": unfinished_batches(conn),
            "conflicts_open": open_conflicts(conn),
            "records_not_synced": open_record_errors(conn),
        }
    outbox = OutboxStore(engine).counts()
    out["outbox_pending"] = outbox["pending"]
    out["outbox_failed"] = outbox["failed"]
    out["outbox_held"] = outbox["held"]
    out["capture_problems"] = trigger_problems(engine, mappings) if mappings is not None else []
    token: dict[str, Any] = {"stored": False}
    if host is not None:
        with engine.connect() as conn:
            row = token_facts(conn, host)
        if row is not None:
            now = datetime.now(UTC)
            issued = row["issued_at"].replace(tzinfo=row["issued_at"].tzinfo or UTC)
            token = {
                "stored": True,
                "portal": host,
                "age_s": int((now - issued).total_seconds()),
                "expires_at": row["expires_at"],
                "scope": row["scope"],
                "rotations": row["generation"],
            }
    out["token"] = token
    return out


async def portal_status(cfg: Any, engine: Engine) -> dict[str, Any]:
    from connector.service import wiring
    from connector.service.bindings import offline_bindings

    async def look() -> dict[str, Any]:
        async with wiring.portal_session(cfg, engine, quick=True) as session:
            events = (await session.client.call("event.get")).result
            queue = await session.client.call("event.offline.list", {"start": 0})
            return {
                "reachable": True,
                "bindings": sorted(offline_bindings(events, cfg.connector_id)),
                "queue_depth": queue.total if queue.total is not None else len(queue.result or []),
            }

    try:  # the local part is already printed-ready; the portal gets a short look only
        return await asyncio.wait_for(look(), timeout=4.0)
    except TimeoutError:
        return {"reachable": False, "error": "no answer within 4 s"}
    except Exception as exc:
        return {"reachable": False, "error": str(exc) or type(exc).__name__}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--local", is_flag=True, help="Do not contact the portal.")
def status(as_json: bool, local: bool) -> None:
    """Show bindings, queue depth, journal, outbox, conflicts and token state."""
    from connector.service import wiring

    cfg = wiring.settings()
    engine = wiring.ready_engine(cfg)
    try:
        host = wiring.portal_host(cfg) if cfg.portal_url else None
        mappings = wiring.mappings(cfg)
        report: dict[str, Any] = {
            "connector_id": cfg.connector_id,
            **local_status(engine, host, mappings),
        }
        if not local and cfg.portal_url:
            report["portal"] = asyncio.run(portal_status(cfg, engine))
    finally:
        engine.dispose()
    if as_json:
        emit_json(report)
        return
    click.echo(f"connector      {report['connector_id']}")
    token = report["token"]
    if token["stored"]:
        click.echo(
            f"tokens         {token['portal']}: issued {token['age_s']} s ago, "
            f"access expires {token['expires_at'] or '- (refreshed on first use)'}, "
            f"scope {token['scope'] or '-'}"
        )
    else:
        click.echo("tokens         none stored (b24-connector auth set < token.txt)")
    portal = report.get("portal")
    if portal is not None and portal["reachable"]:
        names = ", ".join(portal["bindings"]) or "none (the next run or sync binds them)"
        click.echo(f"bindings       {len(portal['bindings'])}: {names}")
        click.echo(f"queue depth    {portal['queue_depth']}")
    elif portal is not None:
        click.echo(f"portal         unreachable: {portal['error']}")
    click.echo(f"journal        {report['journal_unfinished']} unfinished batches")
    click.echo(f"conflicts      {report['conflicts_open']} open")
    click.echo(f"not synced     {report['records_not_synced']} records")
    click.echo(
        f"outbox         {report['outbox_pending']} pending, {report['outbox_held']} held by "
        f"conflicts, {report['outbox_failed']} refused by the portal"
        + (" (b24-connector outbox list --failed)" if report["outbox_failed"] else "")
    )
    for problem in report["capture_problems"]:
        click.echo(f"capture        {problem}: ERP edits there are not seen; run db upgrade")
