"""ERP tables follow the mappings: created on db upgrade, extended without losing data."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings, parse_mapping
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_schema import sync_erp_schema
from connector.core.mapping_model import MappingSet

REPO = Path(__file__).resolve().parents[2]

V1 = """\
entity: crm.company
table: erp_company
fields:
  - {portal: TITLE, column: title, type: string, length: 100}
  - {portal: COMMENTS, column: comments, type: text}
multifields:
  - {portal: PHONE, table: erp_company_phone}
"""
V2 = V1.replace(
    "  - {portal: COMMENTS, column: comments, type: text}\n",
    "  - {portal: REVENUE, column: revenue, type: decimal}\n",
)


def one(text: str) -> MappingSet:
    m = parse_mapping(text, "company.yaml")
    return MappingSet({m.entity: m})


def test_shipped_mappings_create_every_table_with_b24_id(db_url: str) -> None:
    """Each entity table has its key, a unique nullable b24_id and one column per field."""
    engine = make_engine(db_url)
    try:
        mappings = load_mappings(REPO / "mappings")
        report = sync_erp_schema(engine, mappings)
        insp = sa.inspect(engine)
        for mapping in mappings:
            assert mapping.table in report.created_tables
            cols = {c["name"]: c for c in insp.get_columns(mapping.table)}
            assert cols["b24_id"]["nullable"] is True
            assert {f.column for f in mapping.fields} <= set(cols)
            uniques = [u["column_names"] for u in insp.get_unique_constraints(mapping.table)]
            unique_idx = [
                i["column_names"] for i in insp.get_indexes(mapping.table) if i.get("unique")
            ]
            assert ["b24_id"] in uniques + unique_idx
        again = sync_erp_schema(engine, mappings)
        assert not again.changed and again.lines() == []
    finally:
        engine.dispose()


def test_a_new_mapped_field_adds_a_column_and_keeps_the_rows(db_url: str) -> None:
    """Adding a field to a mapping adds its column; existing rows and values stay."""
    engine = make_engine(db_url)
    try:
        sync_erp_schema(engine, one(V1))
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO erp_company (b24_id, title, comments) VALUES (5, 'Acme', 'vip')"
                )
            )
        report = sync_erp_schema(engine, one(V2))
        assert report.added_columns == ["erp_company.revenue"]
        assert report.kept_columns == ["erp_company.comments"]
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT b24_id, title, comments, revenue FROM erp_company")
            ).one()
        assert tuple(row) == (5, "Acme", "vip", None)
    finally:
        engine.dispose()


def test_a_changed_type_is_reported_not_applied(db_url: str) -> None:
    """A type change in the mapping is refused with a message; the column stays as it was."""
    engine = make_engine(db_url)
    try:
        sync_erp_schema(engine, one(V1))
        report = sync_erp_schema(engine, one(V1.replace("type: text", "type: integer")))
        assert any("erp_company.comments differs from the mapping" in r for r in report.refused)
        cols = {c["name"]: c for c in sa.inspect(engine).get_columns("erp_company")}
        assert not isinstance(cols["comments"]["type"], sa.BigInteger)
    finally:
        engine.dispose()


def test_dry_run_changes_nothing(db_url: str) -> None:
    """--dry-run reports the tables it would create and creates none."""
    engine = make_engine(db_url)
    try:
        report = sync_erp_schema(engine, one(V1), dry_run=True)
        assert set(report.created_tables) == {"erp_company", "erp_company_phone"}
        assert "erp_company" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
