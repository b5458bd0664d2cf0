"""``b24-connector queue list``: the portal's offline queue for this connector."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

import click

from connector.service.output import emit_json


async def read_queue(limit: int | None) -> list[Mapping[str, Any]]:
    """Every record of our partition (``event.offline.list``), locked and errored included."""
    from connector.service import wiring

    cfg = wiring.settings()
    engine = wiring.ready_engine(cfg)
    rows: list[Mapping[str, Any]] = []
    try:
        async with wiring.portal_session(cfg, engine) as session:
            start = 0
            while limit is None or len(rows) < limit:
                answer = await session.client.call(
                    "event.offline.list", {"order": {"ID": "ASC"}, "start": start}
                )
                page = answer.result if isinstance(answer.result, list) else []
                rows += [r for r in page if isinstance(r, Mapping)]
                if not page or answer.next is None:
                    break
                start = answer.next
    finally:
        engine.dispose()
    return rows[:limit] if limit is not None else rows


@click.group()
def queue() -> None:
    """Inspect the portal's offline event queue for this connector."""


@queue.command("list")
@click.option("--limit", type=int, default=None, help="Show at most this many records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def queue_list(limit: int | None, as_json: bool) -> None:
    """List queued records (event.offline.list), including locked and errored ones."""
    rows = asyncio.run(read_queue(limit))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("the queue is empty")
        return
    header = ("ID", "event", "entity id", "last fired", "state", "MESSAGE_ID")
    lines = [_row(r) for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header)
        for line in lines:
            table.add_row(*line)
        Console().print(table)
    else:  # piped: plain columns, nothing truncated
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        for line in (header, *lines):
            click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    click.echo(f"{len(rows)} records")


def _row(r: Mapping[str, Any]) -> tuple[str, ...]:
    data = r.get("EVENT_DATA")
    fields = data.get("FIELDS") if isinstance(data, Mapping) else None
    entity = fields.get("ID") if isinstance(fields, Mapping) else "?"
    pid = str(r.get("PROCESS_ID") or "")
    state = (
        "error (held)"
        if str(r.get("ERROR")) == "1"
        else f"locked by {pid[:8]}"
        if pid
        else "waiting"
    )
    return (
        str(r.get("ID")),
        str(r.get("EVENT_NAME")),
        str(entity),
        str(r.get("TIMESTAMP_X")),
        state,
        str(r.get("MESSAGE_ID")),
    )
