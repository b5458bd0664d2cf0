"""``b24-connector backfill [--entity E] [--restart]``: the full initial load, resumable.

On a terminal a rich progress bar per entity shows the position in the ID range, the
records applied and the rate; otherwise (a pipe, a log file, systemd) one plain line
per window and a summary line per entity.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import click

from connector.core.batch_commands import Command
from connector.service.backfill import BackfillProgress, BackfillStats, EntityStats

__all__ = ["LineProgress", "RichProgress", "backfill", "summary_line"]


def summary_line(stats: EntityStats, seconds: float | None = None) -> str:
    """One line saying how an entity's backfill ended."""
    if stats.already_finished:
        return (
            f"{stats.entity}: finished before (last ID {stats.last_id}); --restart loads it again"
        )
    text = (
        f"{stats.entity}: done, {stats.records:,} records ({stats.inserted:,} new, "
        f"{stats.updated:,} changed, {stats.unchanged:,} unchanged, {stats.skipped:,} newer "
        f"in the ERP, {stats.conflicts:,} conflicts, {stats.bad:,} bad"
    )
    if stats.deleted:
        text += f", {stats.deleted:,} gone from the portal"
    text += ")"
    if seconds is not None and seconds > 0:
        text += f" in {seconds:.1f} s, {stats.records / seconds:,.0f} records/s"
    return text


class _Clocked:
    """Per-entity start times, so both sinks can show a rate."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def _start(self, entity: str) -> None:
        self._started[entity] = time.monotonic()

    def _elapsed(self, entity: str) -> float | None:
        started = self._started.get(entity)
        return None if started is None else time.monotonic() - started

    def _rate(self, entity: str, records: int) -> float:
        elapsed = self._elapsed(entity)
        return records / elapsed if elapsed else 0.0


class LineProgress(_Clocked):
    """Plain lines, one per window: for pipes and log files."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__()
        self.out = out

    def _say(self, text: str) -> None:
        click.echo(f"backfill {text}", file=self.out)

    def entity_started(self, entity: str, *, after: int, top_id: int | None) -> None:
        self._start(entity)
        where = f"after ID {after}" if after else "from the start"
        top = f", highest ID now {top_id}" if top_id is not None else ""
        self._say(f"{entity}: reading {where}{top}")

    def window_applied(self, entity: str, stats: EntityStats) -> None:
        self._say(
            f"{entity}: {stats.records:,} records, last ID {stats.last_id}, "
            f"{self._rate(entity, stats.records):,.0f} records/s"
        )

    def entity_done(self, entity: str, stats: EntityStats) -> None:
        self._say(summary_line(stats, self._elapsed(entity)))


class RichProgress(_Clocked):
    """A rich progress bar per entity (the bar follows the ID range, which needs no count)."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[records]:>10,} records"),
            TextColumn("{task.fields[rate]:>8,.0f} records/s"),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._after: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def entity_started(self, entity: str, *, after: int, top_id: int | None) -> None:
        self._start(entity)
        self._after[entity] = after
        total = max(0, top_id - after) if top_id is not None else None
        self._tasks[entity] = self.progress.add_task(entity, total=total, records=0, rate=0.0)

    def window_applied(self, entity: str, stats: EntityStats) -> None:
        task = self._tasks[entity]
        self.progress.update(
            task,
            completed=max(0, stats.last_id - self._after.get(entity, 0)),
            records=stats.records,
            rate=self._rate(entity, stats.records),
        )

    def entity_done(self, entity: str, stats: EntityStats) -> None:
        task = self._tasks.get(entity)
        if task is not None:
            total = self.progress.tasks[task].total
            self.progress.update(task, completed=total if total is not None else 1, total=total)
        self.progress.console.print(
            summary_line(stats, self._elapsed(entity)), highlight=False, markup=False
        )


def _progress_for(stream: TextIO) -> BackfillProgress | RichProgress:
    if stream.isatty():
        return RichProgress()
    return LineProgress()


async def _run(
    cfg: Any, engine: Any, mappings: Any, entities: Iterable[str], restart: bool
) -> BackfillStats:
    """Open the portal session, bind the offline events first, then backfill."""
    from connector.service import wiring
    from connector.service.backfill import run_backfill
    from connector.service.bindings import BindingReport, ensure_bindings
    from connector.service.reconcile import note_bindings

    sink = _progress_for(sys.stdout)
    async with wiring.portal_session(cfg, engine) as session:
        client = session.client

        async def bind(probes: Sequence[Command]) -> BindingReport:
            report = await ensure_bindings(client, mappings, cfg.connector_id, probes=probes)
            # events bound again for entities synced before: their gap gets a reconcile
            await asyncio.to_thread(note_bindings, engine, mappings, report.bound)
            return report

        with sink if isinstance(sink, RichProgress) else contextlib.nullcontext():
            return await run_backfill(
                client,
                engine,
                mappings,
                entities=list(entities) or None,
                progress=sink,
                restart=restart,
                bindings=bind,
                connector_id=cfg.connector_id,
            )


entity_option = click.option(
    "--entity",
    "entities",
    multiple=True,
    metavar="E",
    help="Only this entity: crm.company or company (repeatable; default: every mapped one).",
)
"""``--entity E`` (repeatable), as backfill and reconcile take it."""


@click.command()
@entity_option
@click.option(
    "--restart",
    is_flag=True,
    help="Start over from ID 0, also for entities a previous backfill finished.",
)
def backfill(entities: tuple[str, ...], restart: bool) -> None:
    """Load every portal record into the ERP tables (resumable).

    Binds the offline events first (so nothing changed meanwhile is lost), then reads each
    entity by ID window, 2,500 records per request, and commits each window
    with its position: a killed backfill goes on from its last committed window. Queue
    events applied meanwhile win over the older backfill read.
    """
    from connector.adapters.startup_heap import freeze_startup_heap
    from connector.service import wiring
    from connector.service.backfill import resolve_entities

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    resolve_entities(mappings, entities)  # an unknown --entity exits 2 before any work
    engine = wiring.ready_engine(cfg)
    freeze_startup_heap()  # composed: the collector stops re-scanning all of it
    try:
        stats = asyncio.run(_run(cfg, engine, mappings, entities, restart))
    finally:
        engine.dispose()
    if stats.total("bad"):
        click.echo(
            f"{stats.total('bad')} record(s) could not be loaded; see `b24-connector status`",
            err=True,
        )
