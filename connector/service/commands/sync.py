"""``b24-connector sync --once``: drain the portal's queue (and, later, the outbox) once."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from connector.service.drainer import DrainStats


def summary(stats: DrainStats) -> str:
    parts = [
        f"{stats.records} queue records in {stats.batches} batches",
        f"{stats.inserted} inserted",
        f"{stats.updated} updated",
        f"{stats.deleted} deleted",
        f"{stats.unchanged} unchanged",
    ]
    if stats.resumed:
        parts.append(f"{stats.resumed} interrupted batches resumed")
    if stats.conflicts:
        parts.append(f"{stats.conflicts} conflicts (see: b24-connector conflicts list)")
    if stats.bad:
        parts.append(f"{stats.bad} records not synced (see: b24-connector status)")
    return "; ".join(parts)


async def sync_once() -> DrainStats:
    from connector.service import wiring
    from connector.service.bindings import ensure_bindings
    from connector.service.drainer import Drainer

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    engine = wiring.ready_engine(cfg)
    try:
        async with wiring.portal_session(cfg, engine) as session:
            await ensure_bindings(session.client, mappings, cfg.connector_id)
            drainer = Drainer(session.client, engine, mappings, cfg.connector_id)
            total = await drainer.resume()
            total.add(await drainer.drain_until_empty())
            return total
    finally:
        engine.dispose()


@click.command()
@click.option(
    "--once",
    is_flag=True,
    required=True,
    help="Drain the queue and the outbox until both are empty, then exit 0.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
def sync(once: bool, as_json: bool) -> None:
    """Sync once: bind the offline events, resume interrupted batches, drain the portal's
    offline queue until it is empty, then exit."""
    stats = asyncio.run(sync_once())
    if as_json:
        click.echo(json.dumps(vars(stats), sort_keys=True))
    else:
        click.echo(f"synced: {summary(stats)}")
