"""Failures the stateful model found, shrunk, kept as named cases (each failed before its
fix). They replay the model's own rules, invariants and teardown, step by step."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.reliability.test_model import BothSides, Rigs


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
