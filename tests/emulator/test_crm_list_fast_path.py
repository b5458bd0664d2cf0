"""crm.<entity>.list through the sorted ID index gives exactly what a full scan gives.

``CrmStore.query`` narrows candidates by the filter's ID window (``>ID``, ``>=ID``,
``<ID``, ``<=ID``, ``=ID``, ``@ID``) and, ordered by ID, stops at a full page when no
total is wanted (``start=-1``). ``query(..., use_index=False)`` is the reference: every
record, the whole filter, then the sort.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.emulator.filter_ops import Condition, IdRange, id_range
from connector.emulator.portal import Portal

STAGES = ["NEW", "PREPARATION", "WON", "LOSE"]
TITLES = ["Alpha", "alphabet", "Beta", "Gamma", "delta", ""]

record_spec = st.fixed_dictionaries(
    {
        "TITLE": st.sampled_from(TITLES),
        "OPPORTUNITY": st.integers(min_value=0, max_value=500),
        "STAGE_ID": st.sampled_from(STAGES),
    },
    optional={"COMPANY_ID": st.integers(min_value=1, max_value=4)},
)

id_number = st.integers(min_value=-3, max_value=140)
id_scalar = st.one_of(
    id_number,
    id_number.map(str),
    id_number.map(lambda n: f"{n}.7"),
    st.sampled_from(["", None, "abc", "1e2", " 7", "-x", "+5", "0x1", "5x", "12ab", "{'ID': '3'}"]),
)
id_value = st.one_of(
    id_scalar,
    st.lists(id_scalar, max_size=6),
    # an unresolved batch reference ($result[p0][49][ID] past a short page) is the rows
    st.lists(st.fixed_dictionaries({"ID": id_number.map(str)}), max_size=3),
    st.lists(id_scalar, max_size=4).map(lambda v: {str(i): x for i, x in enumerate(v)}),
)

filters = st.fixed_dictionaries(
    {},
    optional={
        ">ID": id_value,
        ">=ID": id_value,
        "<ID": id_value,
        "<=ID": id_value,
        "@ID": id_value,
        "ID": id_value,
        "=ID": id_value,
        "!ID": id_value,
        "!@ID": id_value,
        "%ID": id_scalar,
        ">OPPORTUNITY": st.integers(min_value=0, max_value=500),
        "<=OPPORTUNITY": st.integers(min_value=0, max_value=500),
        "STAGE_ID": st.one_of(st.sampled_from(STAGES), st.lists(st.sampled_from(STAGES))),
        "!STAGE_ID": st.sampled_from(STAGES),
        "%TITLE": st.sampled_from(["alp", "a", "zz"]),
        "COMPANY_ID": st.sampled_from([1, 2, "", "3"]),
        "NO_SUCH_FIELD": st.just(1),
    },
)

orders = st.sampled_from(
    [
        None,
        {"ID": "ASC"},
        {"ID": "DESC"},
        {"id": "desc"},
        {"ID": "ASC", "TITLE": "DESC"},
        {"ID": "DESC", "OPPORTUNITY": "ASC"},
        {"OPPORTUNITY": "DESC"},
        {"TITLE": "ASC", "ID": "DESC"},
        {"STAGE_ID": "DESC", "OPPORTUNITY": "ASC"},
        {"NO_SUCH_FIELD": "ASC"},
    ]
)

starts = st.one_of(st.sampled_from([-1, 0, 50, 100]), st.integers(min_value=0, max_value=160))
selects = st.sampled_from([None, ["ID"], ["ID", "TITLE"], ["*"], ["TITLE", "STAGE_ID"]])


def build(specs: list[dict[str, Any]], deleted: set[int]) -> Portal:
    """A portal with one deal per spec, then the specs at positions ``deleted`` removed."""
    portal = Portal()
    made = [portal.crm.add(None, "deal", dict(spec)) for spec in specs]
    for position in sorted(deleted):
        if position < len(made):
            portal.crm.delete(None, "deal", made[position])
    return portal


@cache
def fixed_portal() -> Portal:
    """130 deals with a gap pattern (every 7th deleted), shared by the query-only test."""
    specs = [
        {
            "TITLE": TITLES[n % len(TITLES)],
            "OPPORTUNITY": (n * 37) % 500,
            "STAGE_ID": STAGES[n % len(STAGES)],
            **({"COMPANY_ID": n % 4 + 1} if n % 3 else {}),
        }
        for n in range(130)
    ]
    return build(specs, set(range(0, 130, 7)))


def both(portal: Portal, **query: Any) -> tuple[Any, Any]:
    fast = portal.crm.query("deal", **query)
    slow = portal.crm.query("deal", use_index=False, **query)
    return fast, slow


@settings(max_examples=250, deadline=None)
@given(flt=filters, order=orders, start=starts, select=selects)
@example(flt={">ID": "5x"}, order={"ID": "ASC"}, start=-1, select=["ID"])
@example(flt={">ID": ["12ab", 100]}, order={"ID": "DESC"}, start=0, select=["ID"])
@example(flt={">ID": [{"ID": "50"}]}, order=None, start=-1, select=["ID"])
@example(flt={">=ID": "5x", "<ID": 60}, order={"ID": "ASC"}, start=-1, select=["ID"])
@example(flt={"@ID": [], "%TITLE": "a"}, order={"TITLE": "ASC"}, start=0, select=None)
@example(flt={">ID": 40, "<=ID": "90", "%TITLE": "a"}, order={"ID": "DESC"}, start=-1, select=None)
def test_index_matches_full_scan_on_fixed_data(
    flt: dict[str, Any], order: dict[str, str] | None, start: int, select: list[str] | None
) -> None:
    """Any mix of ID and other filters, any order, counted or start=-1: the indexed query
    returns the same rows (same fields, same order) and the same total as the full scan."""
    fast, slow = both(fixed_portal(), filter=flt, order=order, start=start, select=select)
    assert fast == slow


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(record_spec, max_size=120),
    deleted=st.sets(st.integers(min_value=0, max_value=119), max_size=40),
    flt=filters,
    order=orders,
    start=starts,
)
def test_index_matches_full_scan_on_random_data(
    specs: list[dict[str, Any]],
    deleted: set[int],
    flt: dict[str, Any],
    order: dict[str, str] | None,
    start: int,
) -> None:
    """Random records with random deletions (gaps in the IDs): the index stays sorted and
    the indexed query agrees with the full scan."""
    portal = build(specs, deleted)
    assert portal.crm.ids("deal") == sorted(portal.crm._records["deal"])
    fast, slow = both(portal, filter=flt, order=order, start=start, select=["ID", "TITLE"])
    assert fast == slow


def test_id_windows_page_through_every_record_once() -> None:
    """>ID windows of 50 with start=-1 walk all records in order, ending on an empty page;
    the same walk downwards with <ID and DESC gives the reverse."""
    portal = fixed_portal()
    expected = portal.crm.ids("deal")
    seen: list[int] = []
    last = 0
    while True:
        rows, total = portal.crm.query(
            "deal", filter={">ID": last}, order={"ID": "ASC"}, select=["ID"], start=-1
        )
        assert total is None
        if not rows:
            break
        assert len(rows) <= 50
        seen += [int(r["ID"]) for r in rows]
        last = seen[-1]
    assert seen == expected

    down: list[int] = []
    last = 10**6
    while rows := portal.crm.query(
        "deal", filter={"<ID": last}, order={"ID": "DESC"}, select=["ID"], start=-1
    )[0]:
        down += [int(r["ID"]) for r in rows]
        last = down[-1]
    assert down == expected[::-1]


def test_only_rows_on_the_page_are_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering (select) runs once per returned row, not per matching record."""
    portal = fixed_portal()
    rendered: list[int] = []
    original = portal.crm._render

    def counting(etype: Any, record: Any, select: list[str], **kw: Any) -> dict[str, Any]:
        rendered.append(record.id)
        return original(etype, record, select, **kw)

    monkeypatch.setattr(portal.crm, "_render", counting)
    for order in ({"ID": "ASC"}, {"TITLE": "DESC"}):
        for start in (-1, 0, 50):
            rendered.clear()
            rows, _ = portal.crm.query("deal", filter={">ID": 3}, order=order, start=start)
            assert rendered == [int(r["ID"]) for r in rows]
            assert len(rows) == 50


@pytest.mark.parametrize(
    ("conditions", "expected", "exact"),
    [
        ([Condition(">", "ID", "10")], IdRange(low=11), True),
        ([Condition(">=", "ID", 10), Condition("<", "ID", 20)], IdRange(low=10, high=19), True),
        ([Condition("<=", "ID", [5, "9"])], IdRange(high=9), True),
        ([Condition(">", "ID", [5, 3])], IdRange(low=4), True),
        ([Condition(">", "ID", "10.9")], IdRange(low=11), True),
        ([Condition(">", "ID", "-x")], IdRange(), False),
        ([Condition(">", "ID", ["abc", 7])], IdRange(low=8), True),
        ([Condition(">", "ID", None)], IdRange(members=frozenset()), True),
        ([Condition(">=", "ID", [])], IdRange(members=frozenset()), True),
        ([Condition("<", "ID", ["-x", None, 9])], IdRange(high=8), True),
        ([Condition(">", "ID", [{"ID": "5"}])], IdRange(members=frozenset()), True),
        (
            [Condition("@", "ID", {"0": 3, "1": "4", "2": "x"})],
            IdRange(members=frozenset({3, 4})),
            True,
        ),
        (
            [Condition("", "ID", [1, 2, 3]), Condition("=", "ID", [2, 3, 4])],
            IdRange(members=frozenset({2, 3})),
            True,
        ),
        (
            [Condition("!", "ID", 5), Condition("!@", "ID", [1]), Condition("%", "ID", 1)],
            IdRange(),
            False,
        ),
        ([Condition(">", "OPPORTUNITY", 5)], IdRange(), False),
    ],
)
def test_id_range_reads_plain_id_conditions(
    conditions: list[Condition], expected: IdRange, exact: bool
) -> None:
    """Bounds and member sets come from plain >, >=, <, <=, =, @ on ID (numbers as the
    filter normalises them); values that never match are dropped and a condition left
    with none allows no ID. Those conditions are covered (left out of the row-by-row
    filter); text ``>`` could match, negated, LIKE or other-field conditions are not."""
    window = id_range(conditions)
    assert replace(window, covered=()) == expected
    assert window.rest(conditions) == ([] if exact else conditions)
