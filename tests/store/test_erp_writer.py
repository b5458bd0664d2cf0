"""Applying portal state to the ERP tables: insert, update, merge, conflict, delete, idempotence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_writer import ErpWriter
from connector.errors import RecordError

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def setup(schema_db_url: str) -> Iterator[tuple[sa.Engine, ErpWriter]]:
    engine = make_engine(schema_db_url)
    mappings = load_mappings(REPO / "mappings")
    yield engine, ErpWriter(mappings)
    engine.dispose()


def company(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "ID": "10",
        "TITLE": "Acme",
        "COMMENTS": "",
        "COMPANY_TYPE": "CUSTOMER",
        "INDUSTRY": "IT",
        "REVENUE": "1500.50",
        "CURRENCY_ID": "EUR",
        "ASSIGNED_BY_ID": "1",
        "DATE_MODIFY": "2026-11-20T10:00:00+03:00",
        "PHONE": [{"ID": "101", "VALUE_TYPE": "WORK", "VALUE": "+100", "TYPE_ID": "PHONE"}],
        "EMAIL": [{"ID": "102", "VALUE_TYPE": "WORK", "VALUE": "a@acme.test", "TYPE_ID": "EMAIL"}],
    }
    rec.update(over)
    return rec


def apply(
    engine: sa.Engine, writer: ErpWriter, record: dict[str, Any] | None, b24_id: int = 10
) -> Any:
    m = writer.mappings.entities["crm.company"]
    with engine.begin() as conn:
        return writer.apply(conn, m, b24_id, record, message_id="m" * 32, now=NOW)


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, ordered: compares database states byte for byte."""
    out = {}
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            out[name] = sorted(tuple(map(repr, r)) for r in conn.execute(sa.select(table)))
    return out


def erp_company(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM erp_company")).mappings().one())


def phones(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT b24_value_id, value_type, value FROM erp_company_phone"
                    " ORDER BY b24_value_id"
                )
            )
        ]


def test_a_new_portal_record_is_inserted_with_its_multifields(setup: Any) -> None:
    """First sight of a company inserts the row, its phones and e-mails with value IDs."""
    engine, writer = setup
    outcome = apply(engine, writer, company())
    assert outcome.action == "inserted"
    row = erp_company(engine)
    assert (row["b24_id"], row["title"], row["revenue"], row["comments"]) == (
        10,
        "Acme",
        Decimal("1500.50"),
        None,
    )
    assert phones(engine) == [(101, "WORK", "+100")]


def test_the_same_state_twice_leaves_the_database_identical(setup: Any) -> None:
    """Re-applying an unchanged record writes nothing: every table is byte-identical."""
    engine, writer = setup
    apply(engine, writer, company())
    before = dump(engine)
    assert apply(engine, writer, company()).action == "unchanged"
    assert dump(engine) == before


def test_portal_edits_update_fields_and_multifields_by_value_id(setup: Any) -> None:
    """A changed title and phone update in place; a removed e-mail row goes; a new one comes."""
    engine, writer = setup
    apply(engine, writer, company())
    outcome = apply(
        engine,
        writer,
        company(
            TITLE="Acme Ltd",
            PHONE=[
                {"ID": "101", "VALUE_TYPE": "MOBILE", "VALUE": "+200"},
                {"ID": "103", "VALUE_TYPE": "HOME", "VALUE": "+300"},
            ],
        ),
    )
    assert outcome.action == "updated"
    assert erp_company(engine)["title"] == "Acme Ltd"
    assert phones(engine) == [(101, "MOBILE", "+200"), (103, "HOME", "+300")]


def test_disjoint_edits_merge(setup: Any) -> None:
    """The ERP edits comments, the portal edits the title: both survive; comments wait to push."""
    engine, writer = setup
    apply(engine, writer, company())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE erp_company SET comments = 'from erp'"))
    outcome = apply(engine, writer, company(TITLE="Portal title"))
    row = erp_company(engine)
    assert (row["title"], row["comments"]) == ("Portal title", "from erp")
    assert outcome.pending_push == {"COMMENTS": "from erp"}


def test_same_field_on_both_sides_is_a_conflict_not_an_overwrite(setup: Any) -> None:
    """Both sides change the title: the ERP keeps its value and a conflict row is opened."""
    engine, writer = setup
    apply(engine, writer, company())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE erp_company SET title = 'ERP title'"))
    outcome = apply(engine, writer, company(TITLE="Portal title", INDUSTRY="Retail"))
    assert outcome.action == "conflict" and outcome.conflicts == ["TITLE"]
    row = erp_company(engine)
    assert (row["title"], row["industry"]) == ("ERP title", "Retail")
    with engine.connect() as conn:
        conflict = conn.execute(
            sa.text("SELECT entity, b24_id, status, fields FROM sync_conflict")
        ).one()
    assert conflict[:3] == ("crm.company", 10, "open")
    fields = conflict[3] if isinstance(conflict[3], dict) else __import__("json").loads(conflict[3])
    assert fields == {"TITLE": {"base": "Acme", "portal": "Portal title", "erp": "ERP title"}}
    again = apply(engine, writer, company(TITLE="Portal title", INDUSTRY="Retail"))
    assert again.conflict_id == outcome.conflict_id  # one open conflict per record


def test_delete_marks_the_row_and_a_return_revives_it(setup: Any) -> None:
    """Under the mark policy a portal delete sets b24_deleted_at and keeps the row."""
    engine, writer = setup
    apply(engine, writer, company())
    assert apply(engine, writer, None).action == "deleted"
    assert erp_company(engine)["b24_deleted_at"] is not None
    assert apply(engine, writer, None).action == "unchanged"
    apply(engine, writer, company())
    assert erp_company(engine)["b24_deleted_at"] is None


def test_a_value_the_column_cannot_hold_raises_record_error_and_writes_nothing(
    setup: Any,
) -> None:
    """A 300-character title names entity, id and field; the transaction writes no row."""
    engine, writer = setup
    with pytest.raises(RecordError, match=r"crm\.company id=10 field=TITLE"):
        apply(engine, writer, company(TITLE="x" * 300))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM erp_company")).scalar() == 0
