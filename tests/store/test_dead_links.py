"""A key that comes back: a dead link (its record deleted) never blocks a new record that
the ERP gives the same key; and the ERP tables we create never hand a key out twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_writer import ErpWriter

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def setup(schema_db_url: str) -> Iterator[tuple[sa.Engine, ErpWriter]]:
    engine = make_engine(schema_db_url)
    yield engine, ErpWriter(load_mappings(REPO / "mappings"))
    engine.dispose()


def links(engine: sa.Engine) -> list[tuple[int, str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT b24_id, erp_key, deleted FROM sync_link ORDER BY b24_id")
        ).all()
    return [(int(b), str(k), bool(d)) for b, k, d in rows]


def test_a_new_record_takes_a_key_a_dead_link_still_names(
    setup: tuple[sa.Engine, ErpWriter],
) -> None:
    """A dead link holds ERP key 1 (as after a delete where the ERP recycled its keys): the
    next portal record the ERP stores under key 1 links, the dead link goes."""
    engine, writer = setup
    m = writer.mappings.entities["crm.company"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sync_link (entity, b24_id, erp_key, base, deleted, updated_at) "
                "VALUES ('crm.company', 7, '1', NULL, :t, :now)"
            ),
            {"t": True, "now": NOW},
        )
        [outcome] = writer.apply_many(conn, m, [(8, {"ID": "8", "TITLE": "New"}, None)], now=NOW)
    assert outcome.action == "inserted" and outcome.erp_key == "1"
    assert links(engine) == [(8, "1", False)]


def test_a_deleted_erp_row_key_is_never_handed_out_again(
    setup: tuple[sa.Engine, ErpWriter],
) -> None:
    """Insert, delete, insert: the second row gets a key of its own on every backend."""
    engine, _ = setup
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO erp_company (title) VALUES ('a')"))
        first = conn.execute(sa.text("SELECT max(id) FROM erp_company")).scalar_one()
        conn.execute(sa.text("DELETE FROM erp_company"))
        conn.execute(sa.text("INSERT INTO erp_company (title) VALUES ('b')"))
        second = conn.execute(sa.text("SELECT max(id) FROM erp_company")).scalar_one()
    assert second > first
