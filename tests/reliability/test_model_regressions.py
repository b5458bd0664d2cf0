"""Failures the stateful model found, shrunk, kept as named cases (each failed before its
fix). They replay the model's own rules, invariants and teardown, step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reliability.test_model import BothSides, Rigs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model(schema_db_url: str) -> Iterator[Callable[[], BothSides]]:
    rigs = Rigs(schema_db_url)
    yield lambda: BothSides(rigs.fresh())
    rigs.close()


def checked(machine: BothSides, *steps: Callable[[], object]) -> None:
    """Run ``steps`` with the invariants after each, then the converging teardown."""
    for step in steps:
        step()
        machine.no_echo()
        machine.conflicts_only_where_both_sides_moved()
    machine.teardown()


@pytest.mark.backends("sqlite", "postgresql")
def test_a_portal_record_after_an_erp_delete_gets_a_key_of_its_own(
    model: Callable[[], BothSides],
) -> None:
    """ERP insert, synced, deleted in the ERP (and so in the portal), then a portal
    insert: on SQLite the new ERP row took the freed key and its link collided with the
    dead one (UNIQUE entity, erp_key), failing the drain for good."""
    m = model()
    checked(
        m,
        lambda: m.erp_insert("a"),
        m.connector_step,
        lambda: m.erp_delete(m.tracked[0]),
        lambda: m.portal_insert("a"),
        m.connector_step,
    )


@pytest.mark.backends("sqlite", "postgresql")
def test_an_erp_delete_sent_before_a_crash_is_not_sent_again(
    model: Callable[[], BothSides],
) -> None:
    """The portal took the delete, the local commit never happened: the restarted push
    sent the delete a second time (two portal writes for one ERP change)."""
    m = model()
    checked(
        m,
        lambda: m.portal_insert("a"),
        m.connector_step,
        lambda: m.erp_delete(m.tracked[0]),
        lambda: m.crash_and_restart("after_write"),
    )


@pytest.mark.backends("sqlite", "postgresql")
def test_keep_portal_after_an_erp_delete_brings_the_record_back(
    model: Callable[[], BothSides],
) -> None:
    """Title changed on both sides, then the row deleted in the ERP: the operator keeps
    the portal's record and the ERP has it again, under a new key."""
    m = model()
    checked(
        m,
        lambda: m.portal_insert("a"),
        m.connector_step,
        lambda: m.erp_update(m.tracked[0], "title", "d"),
        lambda: m.portal_update(m.tracked[0], "title", "c"),
        lambda: m.erp_delete(m.tracked[0]),
    )


def test_kill9_a_push_that_landed_but_never_committed_is_ours_to_the_drain_too(
    schema_db_url: str,
) -> None:
    """Found by kill -9 (PostgreSQL, seed 107): the push sent COMMENTS=C7 and the portal
    took it, then the kill lost the local commit — the link's base still had no
    COMMENTS, the outbox row stayed pending with what it sent. The ERP then changed
    COMMENTS to C9, and a portal TITLE edit brought the record to the drain, which saw
    base None, portal C7, ERP C9 and opened a conflict that held the record for good
    (both sides' later edits stopped syncing). The portal's C7 is our own write: the
    drain takes the title, keeps C9 and leaves it to the push."""
    from connector.adapters.mapping_files import load_mappings
    from connector.adapters.store.database import make_engine
    from connector.adapters.store.erp_writer import ErpWriter
    from connector.adapters.store.tables import sync_outbox

    engine = make_engine(schema_db_url)
    writer = ErpWriter(load_mappings(REPO / "mappings"))
    m = writer.mappings.entities["crm.company"]
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    first = {"ID": "1", "TITLE": "P0", "COMMENTS": "", "DATE_MODIFY": "2026-12-01T10:00:00+00:00"}
    try:
        with engine.begin() as conn:
            done = writer.apply(conn, m, 1, first, message_id=None, now=now)
            key = done.erp_key
            conn.execute(
                sa.text("UPDATE erp_company SET comments = 'C9' WHERE id = :k"), {"k": key}
            )
            for sent in ({"COMMENTS": "C7"}, None):  # the interrupted push's row, then C9's
                conn.execute(
                    sync_outbox.insert().values(
                        entity=m.entity,
                        erp_key=str(key),
                        op="update",
                        changed=["comments"],
                        created_at=now,
                        status="pending",
                        sent=sent,
                    )
                )
        edited = {**first, "TITLE": "T8", "COMMENTS": "C7"}
        with engine.begin() as conn:
            outcome = writer.apply(conn, m, 1, edited, message_id=None, now=now)
            title, comments = conn.execute(
                sa.text("SELECT title, comments FROM erp_company WHERE id = :k"), {"k": key}
            ).one()
            conflicts = conn.execute(sa.text("SELECT count(*) FROM sync_conflict")).scalar()
        assert outcome.action == "updated" and conflicts == 0
        assert (title, comments) == ("T8", "C9")
        assert "COMMENTS" in outcome.pending_push  # the push brings C9 to the portal
    finally:
        engine.dispose()
