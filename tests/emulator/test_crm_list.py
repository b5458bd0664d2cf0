"""crm.<entity>.list: filter operators, order, select, paging and start=-1 (digest §5,
§11.1 "CRM")."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.context import CallContext
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError


def call(portal: Portal, method: str, params: dict[str, Any] | None = None) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    ctx = CallContext(client_id="local.app1", user_id=1, is_admin=True)
    return entry[0](portal, ctx, dict(params or {}))


def ids(result: MethodResult) -> list[int]:
    return [int(row["ID"]) for row in result.result]


@pytest.fixture
def portal() -> Portal:
    """Deals 1..6 with known titles, amounts, stages and companies."""
    p = Portal()
    rows = [
        ("Alpha", 100, "NEW", 1),
        ("Beta", 250, "WON", 2),
        ("Gamma", 250, "NEW", None),
        ("alphabet", 40, "LOSE", 1),
        ("Delta", 999, "PREPARATION", 2),
        ("Epsilon", 0, "NEW", None),
    ]
    for title, amount, stage, company in rows:
        fields: dict[str, Any] = {"TITLE": title, "OPPORTUNITY": amount, "STAGE_ID": stage}
        if company:
            fields["COMPANY_ID"] = company
        p.crm.add(None, "deal", fields)
    return p


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"STAGE_ID": "NEW"}, [1, 3, 6]),
        ({"=STAGE_ID": "NEW"}, [1, 3, 6]),
        ({"!STAGE_ID": "NEW"}, [2, 4, 5]),
        ({"!=STAGE_ID": "NEW"}, [2, 4, 5]),
        ({">OPPORTUNITY": 100}, [2, 3, 5]),
        ({">=OPPORTUNITY": "100"}, [1, 2, 3, 5]),
        ({"<OPPORTUNITY": 100}, [4, 6]),
        ({"<=OPPORTUNITY": 100}, [1, 4, 6]),
        ({"%TITLE": "alpha"}, [1, 4]),
        ({"@ID": [2, 4, 6]}, [2, 4, 6]),
        ({"@ID": {"0": 1, "1": 5}}, [1, 5]),
        ({"!@ID": [2, 4, 6]}, [1, 3, 5]),
        ({"ID": [3, 5]}, [3, 5]),
        ({">ID": 4}, [5, 6]),
        ({"COMPANY_ID": 2, ">OPPORTUNITY": 300}, [5]),
        ({"=COMPANY_ID": ""}, [3, 6]),
        ({"!COMPANY_ID": ""}, [1, 2, 4, 5]),
        ({"<ID": "1000", "=STAGE_SEMANTIC_ID": "F"}, [4]),
    ],
)
def test_filter_operators(portal: Portal, flt: dict[str, Any], expected: list[int]) -> None:
    """=, no prefix, !, !=, >, >=, <, <=, % (LIKE), @ / !@ (IN) and empty-value filters."""
    assert ids(call(portal, "crm.deal.list", {"filter": flt})) == expected


def test_filter_on_dates(portal: Portal) -> None:
    """DATE_CREATE compares as a date-time (ISO with offset)."""
    portal.clock.advance(3600)
    cut = portal.clock.iso()
    portal.clock.advance(60)
    late = portal.crm.add(None, "deal", {"TITLE": "late"})
    assert ids(call(portal, "crm.deal.list", {"filter": {">DATE_CREATE": cut}})) == [late]
    assert len(ids(call(portal, "crm.deal.list", {"filter": {"<DATE_CREATE": cut}}))) == 6


def test_unknown_filter_fields_are_ignored(portal: Portal) -> None:
    """A filter on a field the entity lacks does not narrow the result."""
    assert len(ids(call(portal, "crm.deal.list", {"filter": {"NO_SUCH": 1}}))) == 6


def test_filter_must_be_a_map(portal: Portal) -> None:
    """filter=<string> is refused."""
    with pytest.raises(RestError):
        call(portal, "crm.deal.list", {"filter": "x"})


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"ID": "DESC"}, [6, 5, 4, 3, 2, 1]),
        ({"OPPORTUNITY": "ASC", "ID": "DESC"}, [6, 4, 1, 3, 2, 5]),
        ({"TITLE": "asc"}, [1, 4, 2, 5, 6, 3]),
        ({"COMPANY_ID": "DESC", "ID": "ASC"}, [2, 5, 1, 4, 3, 6]),
    ],
)
def test_order(portal: Portal, order: dict[str, str], expected: list[int]) -> None:
    """order by one or several fields, ASC/DESC, numbers as numbers, strings caselessly."""
    assert ids(call(portal, "crm.deal.list", {"order": order})) == expected


def test_default_order_is_id_ascending(portal: Portal) -> None:
    """Without order the records come by ID."""
    assert ids(call(portal, "crm.deal.list")) == [1, 2, 3, 4, 5, 6]


def test_default_select_is_the_standard_non_multi_fields() -> None:
    """No select → standard fields without PHONE/EMAIL and without UF_*."""
    p = Portal()
    p.crm.add_userfield("contact", "UF_CRM_X")
    p.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}], "UF_CRM_X": "v"})
    row = call(p, "crm.contact.list").result[0]
    assert "NAME" in row and "DATE_CREATE" in row and "HAS_PHONE" in row
    assert "PHONE" not in row and "UF_CRM_X" not in row
    assert call(p, "crm.contact.list", {"select": ["*"]}).result[0] == row


def test_select_extends_with_uf_and_multifields() -> None:
    """select [*, UF_*, PHONE] adds user fields and phones; explicit names narrow."""
    p = Portal()
    p.crm.add_userfield("contact", "UF_CRM_X")
    p.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}], "UF_CRM_X": "v"})
    row = call(p, "crm.contact.list", {"select": ["*", "UF_*", "PHONE"]}).result[0]
    assert row["UF_CRM_X"] == "v" and row["PHONE"][0]["VALUE"] == "1" and "NAME" in row
    assert "EMAIL" not in row
    narrow = call(p, "crm.contact.list", {"select": {"0": "NAME", "1": "EMAIL"}}).result[0]
    assert narrow == {"ID": "1", "NAME": "A"}


def test_filter_on_multifield_values() -> None:
    """filter[PHONE] / filter[%EMAIL] match any of the entity's values."""
    p = Portal()
    p.crm.add(
        None, "contact", {"NAME": "A", "EMAIL": [{"VALUE": "a@x.test"}, {"VALUE": "a@y.test"}]}
    )
    p.crm.add(None, "contact", {"NAME": "B", "PHONE": [{"VALUE": "+100"}]})
    assert ids(call(p, "crm.contact.list", {"filter": {"PHONE": "+100"}})) == [2]
    assert ids(call(p, "crm.contact.list", {"filter": {"%EMAIL": "y.test"}})) == [1]


def test_filter_on_user_fields() -> None:
    """UF_CRM_* fields filter by their type (integer compares numerically)."""
    p = Portal()
    p.crm.add_userfield("lead", "UF_CRM_N", "integer")
    for n in (5, 30, 200):
        p.crm.add(None, "lead", {"TITLE": str(n), "UF_CRM_N": n})
    assert ids(call(p, "crm.lead.list", {"filter": {">UF_CRM_N": "10"}})) == [2, 3]


def test_paging_fifty_with_total_and_next() -> None:
    """120 records: start 0/50/100 give 50/50/20, next 50/100/none, total 120."""
    p = Portal()
    p.crm.seed("company", 120)
    first = call(p, "crm.company.list", {"select": ["ID"]})
    second = call(p, "crm.company.list", {"select": ["ID"], "start": first.next})
    third = call(p, "crm.company.list", {"select": ["ID"], "start": str(second.next)})
    assert (len(first.result), first.total, first.next) == (50, 120, 50)
    assert (len(second.result), second.next) == (50, 100)
    assert (len(third.result), third.next, third.total) == (20, None, 120)
    assert ids(third)[-1] == 120


def test_start_minus_one_has_no_total_or_next() -> None:
    """start=-1 returns the first 50 without counting: the fast ID-cursor export."""
    p = Portal()
    p.crm.seed("lead", 70)
    page = call(
        p,
        "crm.lead.list",
        {"start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 0}, "select": ["ID"]},
    )
    assert (len(page.result), page.total, page.next) == (50, None, None)
    cursor = ids(page)[-1]
    rest = call(
        p,
        "crm.lead.list",
        {"start": "-1", "order": {"ID": "ASC"}, "filter": {">ID": cursor}, "select": ["ID"]},
    )
    assert ids(rest) == list(range(51, 71))


def test_list_rows_use_real_output_types(portal: Portal) -> None:
    """List rows carry strings for IDs and money like get does."""
    row = call(portal, "crm.deal.list", {"filter": {"ID": 2}}).result[0]
    assert (row["ID"], row["OPPORTUNITY"], row["COMPANY_ID"]) == ("2", "250.00", "2")
