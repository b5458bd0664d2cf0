"""``b24-connector errors list|retry``: records refused for a bad value, and their retry."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from connector.errors import ConfigError
from connector.service.output import emit_json


@click.group()
def errors() -> None:
    """Records that could not be synced (bad values, malformed queue records)."""


@errors.command("list")
@click.option("--all", "everything", is_flag=True, help="Resolved ones too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def errors_list(everything: bool, as_json: bool) -> None:
    """List open record errors, oldest first."""
    from connector.adapters.store.record_errors import error_list
    from connector.service import wiring

    engine = wiring.ready_engine(wiring.settings())
    try:
        with engine.connect() as conn:
            rows = error_list(conn, everything=everything)
    finally:
        engine.dispose()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no open record errors")
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['status']:<8} {r['message']}")


@errors.command("retry")
@click.argument("error_id", type=int, required=False)
@click.option("--all", "retry_all", is_flag=True, help="Retry every open error.")
def errors_retry(error_id: int | None, retry_all: bool) -> None:
    """Re-read a refused record (or --all) from the portal and sync it again."""
    if (error_id is None) == (not retry_all):
        raise ConfigError("errors retry: give one error ID or --all")
    stats = asyncio.run(_retry(error_id))
    click.echo(
        f"retried {stats['records']} records: {stats['fixed']} synced now, "
        f"{stats['open']} still refused (b24-connector errors list)"
    )


async def _retry(error_id: int | None) -> dict[str, Any]:
    from connector.adapters.store.backlog import open_record_errors
    from connector.adapters.store.record_errors import error_status
    from connector.service import wiring

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    engine = wiring.ready_engine(cfg)
    try:
        ids: list[int] | None = None
        if error_id is not None:
            with engine.connect() as conn:
                status = error_status(conn, error_id)
            if status is None:
                raise ConfigError(f"errors retry: no record error {error_id}")
            if status != "open":
                raise ConfigError(f"errors retry: error {error_id} is {status}, not open")
            ids = [error_id]
        with engine.connect() as conn:
            before = open_record_errors(conn)
        async with (
            wiring.portal_session(cfg, engine) as session,
            wiring.leased_services(cfg, engine, mappings, session.client) as services,
        ):
            stats = await services.holds.retry_errors(ids, force=True)
        with engine.connect() as conn:
            after = open_record_errors(conn)
        return {"records": stats.records, "fixed": int(before) - int(after), "open": int(after)}
    finally:
        engine.dispose()
