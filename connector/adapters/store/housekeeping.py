"""Housekeeping: the connector's own tables stay bounded on a worker that runs for months.

* ``sync_journal``: a cleared batch is kept for ``journal_keep`` (a day by default) — long
  enough for a backfill window's live-event check (it reads entries newer than the
  window's read time) and for a look after an incident — then deleted. Unfinished
  entries are never touched.
* ``sync_outbox``: a ``done`` row is kept for ``outbox_keep`` (a week), for ``outbox
  list``; pending, held and failed rows are never touched.

:func:`prune` is run by ``run`` at start-up and every hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from connector.adapters.store.journal import CLEARED
from connector.adapters.store.tables import sync_journal, sync_outbox

__all__ = ["JOURNAL_KEEP", "OUTBOX_KEEP", "Pruned", "prune"]

JOURNAL_KEEP = timedelta(days=1)
OUTBOX_KEEP = timedelta(days=7)


@dataclass(frozen=True)
class Pruned:
    journal: int
    outbox: int


def prune(
    engine: Engine,
    *,
    now: datetime | None = None,
    journal_keep: timedelta = JOURNAL_KEEP,
    outbox_keep: timedelta = OUTBOX_KEEP,
) -> Pruned:
    """Delete cleared journal entries and done outbox rows past their keep."""
    at = now or datetime.now(UTC)
    with engine.begin() as conn:
        journal = conn.execute(
            sync_journal.delete().where(
                sync_journal.c.state == CLEARED, sync_journal.c.updated_at < at - journal_keep
            )
        ).rowcount
        outbox = conn.execute(
            sync_outbox.delete().where(
                sync_outbox.c.status == "done", sync_outbox.c.done_at < at - outbox_keep
            )
        ).rowcount
    return Pruned(int(journal or 0), int(outbox or 0))
