"""``b24-connector sync --once``: drain the portal's queue and push the outbox, once."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from connector.service.drainer import DrainStats
    from connector.service.pusher import PushStats


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


def push_summary(stats: PushStats) -> str:
    parts = [
        f"{stats.records} ERP records",
        f"{stats.added} added",
        f"{stats.updated} updated",
        f"{stats.deleted} deleted",
        f"{stats.unchanged} with nothing to send",
    ]
    if stats.held:
        parts.append(f"{stats.held} held by conflicts (see: b24-connector conflicts list)")
    if stats.failed:
        parts.append(f"{stats.failed} refused (see: b24-connector outbox list --failed)")
    if stats.retry_later:
        parts.append(f"{stats.retry_later} left for a retry")
    return "; ".join(parts)


async def sync_once() -> tuple[DrainStats, PushStats]:
    """Bind, resume, then drain the queue and push the outbox until both are empty."""
    from connector.adapters.startup_heap import freeze_startup_heap
    from connector.service import wiring
    from connector.service.bindings import ensure_bindings
    from connector.service.pusher import PushStats
    from connector.service.reconcile import note_bindings, run_pending

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    engine = wiring.ready_engine(cfg)
    freeze_startup_heap()  # composed: the collector stops re-scanning all of it
    try:
        async with (
            wiring.portal_session(cfg, engine) as session,
            wiring.leased_services(cfg, engine, mappings, session.client) as services,
        ):
            report = await ensure_bindings(session.client, mappings, cfg.connector_id)
            await asyncio.to_thread(note_bindings, engine, mappings, report.bound)
            drainer, pusher, holds = services.drainer, services.pusher, services.holds
            total = await drainer.resume()
            total.add(await holds.sweep())
            await run_pending(session.client, engine, mappings, cfg.connector_id)
            pushed = PushStats()
            while True:
                drained = await drainer.drain_until_empty()
                drained.add(await holds.settle())
                round_ = await pusher.push_until_empty()
                total.add(drained)
                pushed.add(round_)
                if not drained.records and not (round_.records - round_.retry_later):
                    break
            return total, pushed
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
    """Sync once: bind the offline events, resume interrupted batches, then drain the
    portal's offline queue and push the ERP's outbox until both are empty, then exit."""
    stats, pushed = asyncio.run(sync_once())
    if as_json:
        report: dict[str, Any] = dict(vars(stats))
        report["push"] = dict(vars(pushed))
        click.echo(json.dumps(report, sort_keys=True))
    else:
        click.echo(f"synced: {summary(stats)}")
        click.echo(f"pushed: {push_summary(pushed)}")
