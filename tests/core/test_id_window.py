"""ID-window paging: page parameters, chained batch pages and loop detection."""

from __future__ import annotations

from typing import Any

import pytest

from connector.core.batch_commands import CommandOutcome
from connector.core.id_window import IdCursor, IdWindow, page_rows, row_id
from connector.errors import RejectedError, RetriableError


def rows(first: int, count: int, key: str = "ID") -> list[dict[str, Any]]:
    return [{key: str(i), "TITLE": f"t{i}"} for i in range(first, first + count)]


def test_page_params_use_id_filter_order_and_no_count() -> None:
    """A page asks for >ID, ID ascending and start=-1, keeping the caller's filter."""
    window = IdWindow(
        "crm.company.list",
        {"filter": {"=TYPE": "A"}, "select": ["TITLE"], "start": 100, "order": {"TITLE": "DESC"}},
    )

    params = window.page_params(7)

    assert params == {
        "filter": {"=TYPE": "A", ">ID": 7},
        "select": ["TITLE", "ID"],
        "order": {"ID": "ASC"},
        "start": -1,
    }


def test_star_select_is_left_alone() -> None:
    """select ['*'] already includes the ID."""
    assert IdWindow("x.list", {"select": ["*"]}).page_params(0)["select"] == ["*"]


def test_chained_commands_reference_previous_page_last_row() -> None:
    """Page k starts after $result[p<k-1>][49][ID]; page 0 after the given ID."""
    commands = IdWindow("crm.deal.list").chained_commands(after=120, pages=3)

    assert [c.key for c in commands] == ["p0", "p1", "p2"]
    assert commands[0].params["filter"][">ID"] == 120
    assert commands[1].params["filter"][">ID"] == "$result[p0][49][ID]"
    assert commands[2].params["filter"][">ID"] == "$result[p1][49][ID]"


def test_chained_commands_for_wrapped_items() -> None:
    """crm.item.list style: the reference goes through the items key and lower-case id."""
    window = IdWindow("crm.item.list", {"entityTypeId": 2}, id_field="id", items_key="items")

    commands = window.chained_commands(after=0, pages=2)

    assert commands[1].params["filter"][">id"] == "$result[p0][items][49][id]"
    assert commands[1].params["order"] == {"id": "ASC"}


@pytest.mark.parametrize("pages", [0, 51])
def test_chain_length_is_bounded(pages: int) -> None:
    """A chain has 1..50 pages."""
    with pytest.raises(ValueError):
        IdWindow("x.list").chained_commands(0, pages)


def test_cursor_walks_until_short_page() -> None:
    """Full pages advance the cursor; a short page ends the list."""
    cursor = IdCursor(IdWindow("x.list"))

    assert len(cursor.accept(rows(1, 50))) == 50
    assert (cursor.last_id, cursor.done) == (50, False)
    assert len(cursor.accept(rows(51, 3))) == 3
    assert (cursor.last_id, cursor.done, cursor.pages) == (53, True, 2)


def test_empty_page_ends_the_list() -> None:
    """An empty first page means nothing to read."""
    cursor = IdCursor(IdWindow("x.list"), after=10)

    assert cursor.accept([]) == []
    assert cursor.done and cursor.last_id == 10


@pytest.mark.parametrize(
    "page",
    [rows(5, 3), [{"ID": "20"}, {"ID": "19"}], [{"ID": "21"}, {"ID": "21"}]],
    ids=["repeats the window", "goes backwards", "repeats an ID"],
)
def test_loops_are_detected(page: list[dict[str, Any]]) -> None:
    """A page that does not move strictly past the last ID is a paging loop."""
    cursor = IdCursor(IdWindow("x.list"), after=10)

    with pytest.raises(RejectedError) as info:
        cursor.accept(page)

    assert info.value.code == "PAGING_LOOP"


def test_accepting_after_done_is_a_loop() -> None:
    """A page after the last page is refused."""
    cursor = IdCursor(IdWindow("x.list"))
    cursor.accept([])

    with pytest.raises(RejectedError):
        cursor.accept([])


def test_batch_pages_stop_at_short_page() -> None:
    """Chained pages are taken in order; pages after the short one are ignored."""
    cursor = IdCursor(IdWindow("x.list"))
    outcomes = [
        CommandOutcome("p0", "x.list", result=rows(1, 50)),
        CommandOutcome("p1", "x.list", result=rows(51, 10)),
        CommandOutcome("p2", "x.list", result=rows(1, 50)),  # broken reference: ignored
    ]

    got = cursor.accept_batch(outcomes)

    assert len(got) == 60
    assert cursor.done and cursor.last_id == 60


def test_batch_first_page_error_is_raised_later_error_ends_batch() -> None:
    """An error on page 0 raises; on a later page the batch ends where it got to."""
    failing = RetriableError("x", code="QUERY_LIMIT_EXCEEDED")
    first = IdCursor(IdWindow("x.list"))
    with pytest.raises(RetriableError):
        first.accept_batch([CommandOutcome("p0", "x.list", error=failing)])

    later = IdCursor(IdWindow("x.list"))
    got = later.accept_batch(
        [
            CommandOutcome("p0", "x.list", result=rows(1, 50)),
            CommandOutcome("p1", "x.list", error=failing),
        ]
    )
    assert len(got) == 50 and not later.done and later.last_id == 50


def test_page_rows_shapes() -> None:
    """Rows come from a list, a wrapped items list or a PHP-array dict."""
    assert rows(1, 1) == page_rows(rows(1, 1))
    assert rows(1, 1, "id") == page_rows({"items": rows(1, 1, "id")}, "items")
    assert page_rows({"0": {"ID": "1"}}) == [{"ID": "1"}]
    with pytest.raises(RejectedError):
        page_rows("nope")


def test_row_id_needs_a_number() -> None:
    """IDs may be strings or ints; anything else is an unexpected answer."""
    assert row_id({"ID": "12"}) == 12
    assert row_id({"id": 12}, "id") == 12
    with pytest.raises(RejectedError):
        row_id({"ID": True})
    with pytest.raises(RejectedError):
        row_id({})
