"""Mapping files: the shipped ones load, and every kind of breakage names file, key, line."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.adapters.mapping_files import load_mappings, parse_mapping
from connector.core.mapping_model import (
    ConflictPolicy,
    DeletePolicy,
    Direction,
    FieldType,
)
from connector.errors import MappingError

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
entity: crm.company
table: erp_company
fields:
  - {portal: TITLE, column: title, type: string, length: 120}
  - portal: UF_CRM_ERP_CODE
    column: erp_code
    type: string
    direction: to_portal
    conflict: erp_wins
  - {portal: REVENUE, column: revenue, type: decimal, precision: 12, scale: 3}
  - portal: COMPANY_TYPE
    column: kind
    type: enum
    values: {CUSTOMER: client, PARTNER: partner}
multifields:
  - {portal: PHONE, table: erp_company_phone}
"""


def test_shipped_mappings_cover_the_four_entities() -> None:
    """mappings/ maps company, contact, lead and deal; company has TITLE, COMMENTS, PHONE, EMAIL."""
    mappings = load_mappings(REPO / "mappings")
    assert set(mappings.entities) == {"crm.company", "crm.contact", "crm.lead", "crm.deal"}
    company = mappings.entities["crm.company"]
    assert company.field_by_portal("TITLE").column == "title"  # type: ignore[union-attr]
    assert company.field_by_portal("COMMENTS").column == "comments"  # type: ignore[union-attr]
    assert {m.portal for m in company.multifields} >= {"PHONE", "EMAIL"}


def test_a_full_mapping_is_parsed_with_defaults() -> None:
    """Every key lands in the model; omitted keys take their documented defaults."""
    m = parse_mapping(GOOD, "company.yaml")
    assert (m.entity, m.table, m.key, m.delete_policy) == (
        "crm.company",
        "erp_company",
        "id",
        DeletePolicy.MARK,
    )
    title, code, revenue, kind = m.fields
    assert (title.type, title.length, title.direction, title.conflict) == (
        FieldType.STRING,
        120,
        Direction.BOTH,
        ConflictPolicy.MANUAL,
    )
    assert (code.direction, code.conflict) == (Direction.TO_PORTAL, ConflictPolicy.ERP_WINS)
    assert (revenue.precision, revenue.scale) == (12, 3)
    assert kind.enum_to_erp() == {"CUSTOMER": "client", "PARTNER": "partner"}
    assert m.event_names() == ("ONCRMCOMPANYADD", "ONCRMCOMPANYUPDATE", "ONCRMCOMPANYDELETE")
    assert m.portal_codes() == [
        "ID",
        "TITLE",
        "UF_CRM_ERP_CODE",
        "REVENUE",
        "COMPANY_TYPE",
        "PHONE",
        "DATE_MODIFY",  # always read: the portal side's modification time
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("table: erp_company\n", "table: erp_company\ncolour: red\n"),
            "company.yaml:3: colour: unknown key",
        ),
        (
            GOOD.replace("type: enum", "type: strng"),
            "company.yaml:13: fields[3].type: 'strng' is not one of string, text",
        ),
        (
            GOOD.replace("column: erp_code", "column: title"),
            "company.yaml:6: fields[1].column: duplicate column 'title'",
        ),
        (
            GOOD.replace("column: erp_code", "column: b24_id"),
            "company.yaml:6: fields[1].column: duplicate column 'b24_id'",
        ),
        (
            GOOD.replace("entity: crm.company", "entity: crm.invoice"),
            "company.yaml:1: entity: 'crm.invoice' is not one of",
        ),
        (
            GOOD.replace("table: erp_company\n", "table: sync_company\n"),
            "company.yaml:2: table: ERP tables may not start with sync_",
        ),
        (
            GOOD.replace("    direction: to_portal\n", "    direction: sideways\n"),
            "company.yaml:8: fields[1].direction: 'sideways' is not one of both",
        ),
        (
            GOOD.replace("length: 120", "length: -1"),
            "company.yaml:4: fields[0].length: expected a whole number from 1",
        ),
        (
            GOOD.replace("{portal: PHONE,", "{portal: FAX,"),
            "company.yaml:16: multifields[0].portal: 'FAX' is not a multi-field",
        ),
        (
            GOOD.replace(
                "  - {portal: TITLE, column: title, type: string, length: 120}\n",
                "  - {portal: TITLE, column: title, type: text, length: 120}\n",
            ),
            "company.yaml:4: fields[0].length: only a string field takes length",
        ),
        ("entity: crm.deal\nfields: []\n", "company.yaml:1: table: required key is missing"),
        ("entity: [crm.deal\n", "company.yaml:2: not valid YAML"),
        ("", "company.yaml:1: the file is empty"),
        (
            GOOD.replace("column: kind\n", "column: Kind-1\n"),
            "company.yaml:12: fields[3].column: 'Kind-1' is not a lower-case SQL name",
        ),
    ],
)
def test_broken_mapping_names_file_key_and_line(text: str, expected: str) -> None:
    """A broken mapping raises MappingError (exit 2) whose message starts file:line: key."""
    with pytest.raises(MappingError) as info:
        parse_mapping(text, "company.yaml")
    assert str(info.value).startswith(expected), str(info.value)
    assert info.value.exit_code == 2


def test_deal_has_no_multifields() -> None:
    """Deals carry no PHONE/EMAIL in Bitrix24, so a deal mapping may not declare them."""
    text = (
        "entity: crm.deal\ntable: erp_deal\nfields: []\nmultifields:\n"
        "  - {portal: PHONE, table: erp_deal_phone}\n"
    )
    with pytest.raises(MappingError, match=r"crm\.deal has no multi-fields"):
        parse_mapping(text, "deal.yaml")


def test_the_same_entity_in_two_files_is_refused(tmp_path: Path) -> None:
    """Two files mapping one entity (or one table) are a configuration error."""
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD.replace("erp_company", "erp_company2"), encoding="utf-8")
    with pytest.raises(MappingError, match=r"b.yaml: entity: entity also mapped in .*a.yaml"):
        load_mappings(tmp_path)


def test_missing_or_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    """No folder, or a folder without *.yaml, says what to set."""
    with pytest.raises(MappingError, match="B24_MAPPINGS_DIR"):
        load_mappings(tmp_path / "nope")
    with pytest.raises(MappingError, match=r"no \*\.yaml"):
        load_mappings(tmp_path)
