"""``b24-connector outbox list|retry``: ERP edits waiting for, or refused by, the portal."""

from __future__ import annotations

from typing import Any

import click

from connector.errors import ConfigError
from connector.service.output import emit_json


@click.group()
def outbox() -> None:
    """Inspect the ERP → portal outbox; retry writes the portal refused."""


def _store() -> Any:
    from connector.adapters.store.outbox import OutboxStore
    from connector.service import wiring

    cfg = wiring.settings()
    return OutboxStore(wiring.ready_engine(cfg))


@outbox.command("list")
@click.option("--failed", "failed_only", is_flag=True, help="Only rows the portal refused.")
@click.option("--limit", type=int, default=200, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def outbox_list(failed_only: bool, limit: int, as_json: bool) -> None:
    """List pending, held and failed outbox rows (oldest first)."""
    from connector.adapters.store.outbox import FAILED, HELD, PENDING

    store = _store()
    try:
        statuses = [FAILED] if failed_only else [PENDING, HELD, FAILED]
        rows = store.rows(statuses=statuses, limit=limit)
    finally:
        store.engine.dispose()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no failed outbox rows" if failed_only else "the outbox is empty")
        return
    for r in rows:
        line = f"{r['id']:>6}  {r['status']:<7}  {r['entity']} {r['erp_key']}  {r['op']}"
        if r["status"] == FAILED:
            line += f"  [{r['error_code']}] {r['last_error']}"
        elif r["note"]:
            line += f"  {r['note']}"
        click.echo(line)


@outbox.command("retry")
@click.argument("row_id", type=int, required=False)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed row.")
def outbox_retry(row_id: int | None, retry_all: bool) -> None:
    """Make a failed row (or --all) pending again; the next sync or run pushes it."""
    if (row_id is None) == (not retry_all):
        raise ConfigError("outbox retry: give one row ID or --all")
    store = _store()
    try:
        if row_id is not None:
            status = store.status_of(row_id)
            if status is None:
                raise ConfigError(f"outbox retry: no outbox row {row_id}")
            if status != "failed":
                raise ConfigError(f"outbox retry: row {row_id} is {status}, not failed")
        count = store.retry(row_id)
    finally:
        store.engine.dispose()
    rows = "row" if count == 1 else "rows"
    click.echo(f"{count} outbox {rows} pending again; run b24-connector sync --once to push")
