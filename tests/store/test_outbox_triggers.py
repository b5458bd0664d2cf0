"""Change capture: ERP edits made with plain SQL land in sync_outbox; ours never do."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.store import migrate
from connector.adapters.store.database import make_engine, write_transaction
from connector.adapters.store.erp_schema import sync_erp_schema
from connector.adapters.store.outbox_triggers import trigger_problems
from connector.core.mapping_model import FieldMapping, FieldType, MappingSet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def engines(schema_db_url: str) -> Any:
    """The connector's engine and a second one standing for the ERP's own connection."""
    ours = make_engine(schema_db_url)
    erp = sa.create_engine(schema_db_url)
    yield ours, erp
    ours.dispose()
    erp.dispose()


def _outbox(engine: sa.Engine) -> list[tuple[str, str, str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity, erp_key, op, changed FROM sync_outbox ORDER BY id")
        ).all()
    out = []
    for entity, key, op, changed in rows:
        if isinstance(changed, str):
            import json

            changed = json.loads(changed)
        out.append((entity, str(key), op, changed))
    return out


def _erp(erp: sa.Engine, *statements: str) -> None:
    with erp.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def _company_key(erp: sa.Engine, title: str) -> str:
    with erp.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT id FROM erp_company WHERE title = :t"), {"t": title}
            ).scalar_one()
        )


def test_erp_insert_update_delete_are_captured_with_the_changed_columns(engines: Any) -> None:
    """Plain SQL from another connection: insert names every pushable column, an update
    names only what changed, a delete is a delete."""
    ours, erp = engines
    _erp(erp, "INSERT INTO erp_company (title, comments) VALUES ('Acme', 'first')")
    key = _company_key(erp, "Acme")
    _erp(erp, "UPDATE erp_company SET comments = 'second' WHERE title = 'Acme'")
    _erp(erp, f"DELETE FROM erp_company WHERE id = {key}")
    rows = _outbox(ours)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("crm.company", key, "insert"),
        ("crm.company", key, "update"),
        ("crm.company", key, "delete"),
    ]
    assert "title" in rows[0][3] and "comments" in rows[0][3]
    assert rows[1][3] == ["comments"]
    assert rows[2][3] is None


def test_an_update_that_changes_no_pushable_column_is_not_captured(engines: Any) -> None:
    """Same value again, a to_erp column (assigned_by_id) or b24_id: nothing to push."""
    ours, erp = engines
    _erp(erp, "INSERT INTO erp_company (title) VALUES ('Acme')")
    _erp(
        erp,
        "UPDATE erp_company SET title = 'Acme'",
        "UPDATE erp_company SET assigned_by_id = 7, b24_id = 99",
    )
    assert [r[2] for r in _outbox(ours)] == ["insert"]


def test_multifield_rows_are_captured_as_an_update_of_their_owner(engines: Any) -> None:
    """A phone added, changed or removed in the ERP is an update of the company."""
    ours, erp = engines
    _erp(erp, "INSERT INTO erp_company (title) VALUES ('Acme')")
    key = _company_key(erp, "Acme")
    _erp(erp, f"INSERT INTO erp_company_phone (owner_id, value) VALUES ({key}, '+1 555')")
    _erp(erp, "UPDATE erp_company_phone SET value = '+1 777'")
    _erp(erp, "UPDATE erp_company_phone SET value = '+1 777'")  # no change: not captured
    _erp(erp, "DELETE FROM erp_company_phone")
    rows = _outbox(ours)[1:]
    assert [(r[1], r[2], r[3]) for r in rows] == [(key, "update", ["erp_company_phone"])] * 3


def test_the_connectors_own_writes_are_not_captured(engines: Any) -> None:
    """write_transaction marks the connector's transaction; the triggers stay quiet in it,
    and the mark does not outlive it (the next plain write on a pooled connection counts)."""
    ours, erp = engines
    with write_transaction(ours) as conn:
        conn.execute(sa.text("INSERT INTO erp_company (title, b24_id) VALUES ('From portal', 5)"))
        conn.execute(sa.text("UPDATE erp_company SET comments = 'x'"))
        conn.execute(
            sa.text(
                "INSERT INTO erp_company_phone (owner_id, value) SELECT id, '+1' FROM erp_company"
            )
        )
    assert _outbox(ours) == []
    with ours.begin() as conn:  # the same pool, no mark: an ordinary write is captured
        conn.execute(sa.text("UPDATE erp_company SET comments = 'y'"))
    _erp(erp, "UPDATE erp_company SET title = 'ERP edit'")
    assert [r[3] for r in _outbox(ours)] == [["comments"], ["title"]]


def test_a_rolled_back_erp_edit_leaves_nothing(engines: Any) -> None:
    """Capture runs in the ERP's transaction: a rollback takes the outbox row with it."""
    ours, erp = engines
    with erp.connect() as conn:
        trans = conn.begin()
        conn.execute(sa.text("INSERT INTO erp_company (title) VALUES ('Never')"))
        trans.rollback()
    assert _outbox(ours) == []


def _with_extra_field(mappings: MappingSet) -> MappingSet:
    company = mappings.entities["crm.company"]
    extra = FieldMapping(portal="UF_CRM_ERP_CODE", column="erp_code", type=FieldType.STRING)
    changed = dataclasses.replace(company, fields=(*company.fields, extra))
    return MappingSet({**mappings.entities, "crm.company": changed})


def test_a_new_mapped_column_is_captured_after_db_upgrade(db_url: str) -> None:
    """The triggers follow the mapping: status sees them stale until the schema step
    re-creates them, and then the new column is captured too."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        shipped = load_mappings(REPO / "mappings")
        sync_erp_schema(engine, shipped)
        assert trigger_problems(engine, shipped) == []
        wider = _with_extra_field(shipped)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE erp_company ADD COLUMN erp_code VARCHAR(255)"))
        assert trigger_problems(engine, wider) == [
            "erp_company: outbox trigger is stale (the mapping changed)"
        ]
        report = sync_erp_schema(engine, wider)
        assert any("erp_company" in line for line in report.lines())
        assert trigger_problems(engine, wider) == []
        _erp(engine, "INSERT INTO erp_company (title) VALUES ('Acme')")
        _erp(engine, "UPDATE erp_company SET erp_code = 'A-1'")
        assert _outbox(engine)[-1][3] == ["erp_code"]
        assert sync_erp_schema(engine, wider).triggers == []  # idempotent
    finally:
        engine.dispose()


def test_status_names_a_table_whose_trigger_is_missing(schema_db_url: str) -> None:
    """A dropped trigger is reported for its table, and the next schema step restores it."""
    engine = make_engine(schema_db_url)
    try:
        shipped = load_mappings(REPO / "mappings")
        from connector.adapters.store.outbox_triggers import existing_triggers

        with engine.begin() as conn:
            for name, table in existing_triggers(conn).items():
                if table == "erp_deal":
                    suffix = " ON erp_deal" if conn.dialect.name == "postgresql" else ""
                    conn.exec_driver_sql(f"DROP TRIGGER {name}{suffix}")
        assert trigger_problems(engine, shipped) == ["erp_deal: outbox trigger is missing"]
        sync_erp_schema(engine, shipped)
        assert trigger_problems(engine, shipped) == []
    finally:
        engine.dispose()
