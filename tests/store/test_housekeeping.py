"""Housekeeping keeps the connector's tables bounded: old cleared journal entries and old
done outbox rows go; anything unfinished, held or failed stays, however old."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.adapters.store.housekeeping import prune
from connector.adapters.store.tables import sync_journal, sync_outbox

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=30)
RECENT = NOW - timedelta(hours=2)


@pytest.fixture
def engine(schema_db_url: str) -> Iterator[sa.Engine]:
    made = make_engine(schema_db_url)
    yield made
    made.dispose()


def journal(engine: sa.Engine, pid: str, state: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sync_journal.insert().values(
                process_id=pid,
                connector_id="erp",
                state=state,
                record_ids=[1],
                events=[],
                created_at=at,
                updated_at=at,
            )
        )


def outbox(engine: sa.Engine, key: str, status: str, done_at: datetime | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sync_outbox.insert().values(
                entity="crm.company",
                erp_key=key,
                op="update",
                created_at=OLD,
                status=status,
                done_at=done_at,
            )
        )


def test_old_cleared_and_done_rows_go_and_nothing_unfinished_does(engine: sa.Engine) -> None:
    journal(engine, "old-cleared", "cleared", OLD)
    journal(engine, "recent-cleared", "cleared", RECENT)
    journal(engine, "old-reserved", "reserved", OLD)
    journal(engine, "old-applied", "applied", OLD)
    outbox(engine, "old-done", "done", OLD)
    outbox(engine, "recent-done", "done", RECENT)
    outbox(engine, "old-failed", "failed", OLD)
    outbox(engine, "old-held", "held", None)
    outbox(engine, "old-pending", "pending", None)
    gone = prune(engine, now=NOW)
    assert (gone.journal, gone.outbox) == (1, 1)
    with engine.connect() as conn:
        pids = set(conn.execute(sa.select(sync_journal.c.process_id)).scalars())
        keys = set(conn.execute(sa.select(sync_outbox.c.erp_key)).scalars())
    assert pids == {"recent-cleared", "old-reserved", "old-applied"}
    assert keys == {"recent-done", "old-failed", "old-held", "old-pending"}
    assert prune(engine, now=NOW) == type(gone)(0, 0)  # idempotent
