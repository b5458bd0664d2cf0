"""``b24-connector reconcile [--entity E] [--since TIME] [--json]``: catch what no event
reported by comparing the portal's ID set with the ERP's links (see
:mod:`connector.service.reconcile`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import click

from connector.errors import ConfigError
from connector.service.commands.backfill import entity_option
from connector.service.output import emit_json

__all__ = ["reconcile", "summary_line"]


def summary_line(stats: Any) -> str:
    """One line per entity: what was compared and what was mended."""
    applied = stats.applied
    text = (
        f"{stats.entity}: {stats.compared:,} portal IDs compared; {applied.deleted:,} gone from "
        f"the portal (applied under the delete policy), {stats.missing:,} missing in the ERP "
        f"(loaded)"
    )
    if stats.since is not None:
        text += f", {stats.changed:,} changed since {stats.since.isoformat()} (re-read)"
    if applied.conflicts or applied.bad:
        text += f"; {applied.conflicts:,} conflicts, {applied.bad:,} bad"
    return text


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {value!r}: not an ISO 8601 time (e.g. 2026-12-01T08:00:00+00:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _run(
    cfg: Any, engine: Any, mappings: Any, chosen: Any, since: datetime | None
) -> list[Any]:
    from connector.service import wiring
    from connector.service.bindings import ensure_bindings
    from connector.service.reconcile import Reconciler, earliest, note_bindings, pending

    async with wiring.portal_session(cfg, engine) as session:
        # bindings before any read, as for backfill: nothing changed meanwhile is lost
        report = await ensure_bindings(session.client, mappings, cfg.connector_id)
        await asyncio.to_thread(note_bindings, engine, mappings, report.bound)
        scheduled = await asyncio.to_thread(pending, engine)
        reconciler = Reconciler(session.client, engine, mappings, connector_id=cfg.connector_id)
        results = []
        for m in chosen:  # a scheduled gap's start is never dropped for a later --since
            when = earliest(since, scheduled[m.entity]) if m.entity in scheduled else since
            results.append(await reconciler.entity(m, since=when))
        return results


@click.command()
@entity_option
@click.option(
    "--since",
    metavar="TIME",
    help="Also re-read records the portal changed at or after TIME (ISO 8601): an ID set "
    "cannot show an update.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reconcile(entities: tuple[str, ...], since: str | None, as_json: bool) -> None:
    """Compare the portal's IDs with the ERP's and mend the difference.

    Reads only IDs (2,500 per request): an ERP row whose portal record is gone is
    handled under the mapping's delete_policy, a portal record the ERP lacks is loaded.
    With --since, records changed since then are re-read too. Use it after the app was
    reinstalled or its bindings were missing; `run` does it by itself when it finds them
    missing at start-up.
    """
    from connector.service import wiring
    from connector.service.backfill import resolve_entities

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    chosen = resolve_entities(mappings, entities)
    when = _since(since)
    engine = wiring.ready_engine(cfg)
    try:
        results = asyncio.run(_run(cfg, engine, mappings, chosen, when))
    finally:
        engine.dispose()
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    for stats in results:
        click.echo(summary_line(stats))
