"""PHP bracket parsing of query strings and forms, JSON bodies, and typed readers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.emulator.params import (
    ParamsError,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    build_query,
    get_ci,
    merge,
    parse_body,
    parse_json,
    parse_query,
    php_truthy,
    split_key,
)


def test_flat_and_nested_keys() -> None:
    """``fields[TITLE]=x`` nests; plain keys stay flat; ``+`` and %-escapes decode."""
    assert parse_query("ID=5&fields[TITLE]=Hello+World&fields[COMMENTS]=a%26b") == {
        "ID": "5",
        "fields": {"TITLE": "Hello World", "COMMENTS": "a&b"},
    }


def test_empty_brackets_append_like_a_php_list() -> None:
    """``id[]=1&id[]=2`` gives keys "0", "1" that as_list reads in order."""
    parsed = parse_query("id[]=7&id[]=9&id[]=8")
    assert parsed == {"id": {"0": "7", "1": "9", "2": "8"}}
    assert as_list(parsed["id"]) == ["7", "9", "8"]


def test_filter_operator_stays_inside_the_key() -> None:
    """``filter[>ID]=5`` and ``filter[!=X]`` keep the operator with the field name."""
    assert parse_query("filter[%3EID]=5&filter[!%3DSTATUS]=N&order[ID]=ASC") == {
        "filter": {">ID": "5", "!=STATUS": "N"},
        "order": {"ID": "ASC"},
    }


def test_deep_multifield_nesting() -> None:
    """``fields[PHONE][0][VALUE]`` builds the multi-field list of dicts."""
    query = (
        "fields[PHONE][0][VALUE]=%2B7+900&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&fields[PHONE][1][VALUE]=555&fields[EMAIL][n0][VALUE]=a@b.c"
    )
    parsed = parse_query(query)
    assert as_list(parsed["fields"]["PHONE"]) == [
        {"VALUE": "+7 900", "VALUE_TYPE": "WORK"},
        {"VALUE": "555"},
    ]
    assert parsed["fields"]["EMAIL"] == {"n0": {"VALUE": "a@b.c"}}


def test_append_after_explicit_numeric_keys_continues_the_index() -> None:
    """PHP appends after the largest integer key: ``a[5]=x&a[]=y`` → keys 5, 6."""
    assert parse_query("a[5]=x&a[]=y") == {"a": {"5": "x", "6": "y"}}


def test_later_value_wins_and_scalar_is_replaced_by_array() -> None:
    """As in PHP: ``a=1&a[b]=2`` ends with the array; a repeated scalar keeps the last."""
    assert parse_query("a=1&a[b]=2&c=1&c=2") == {"a": {"b": "2"}, "c": "2"}


def test_php_base_name_mangling() -> None:
    """Dots and spaces in the top-level name become underscores; brackets don't."""
    assert split_key("a.b[c.d]") == ["a_b", "c.d"]
    assert split_key("plain") == ["plain"]
    assert split_key("x[unclosed") == ["x_unclosed"]


def test_json_body_keeps_types_and_must_be_an_object() -> None:
    """JSON values keep their types; a scalar body is refused; empty is no params."""
    assert parse_json(b'{"id": [1, 2], "clear": 0}') == {"id": [1, 2], "clear": 0}
    assert parse_json(b"  ") == {}
    with pytest.raises(ParamsError):
        parse_json(b"42")
    with pytest.raises(ParamsError):
        parse_json(b"{broken")


def test_body_by_content_type() -> None:
    """Form bodies parse like queries; JSON by content type; unknown types give nothing."""
    assert parse_body(b"a[x]=1", "application/x-www-form-urlencoded; charset=utf-8") == {
        "a": {"x": "1"}
    }
    assert parse_body(b'{"a": 1}', "application/json") == {"a": 1}
    assert parse_body(b"<xml/>", "text/xml") == {}


def test_merge_body_overrides_query_at_top_level() -> None:
    """``$_REQUEST``: body keys replace query keys of the same name (not deep)."""
    assert merge({"a": "1", "f": {"x": "1"}}, {"f": {"y": "2"}, "b": 2}) == {
        "a": "1",
        "f": {"y": "2"},
        "b": 2,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (12, 12), (12.0, 12), (True, 1), (" 7x", 7), ("x", None), (None, None)],
)
def test_as_int_reads_strings_and_json_numbers(value: Any, expected: int | None) -> None:
    """as_int accepts the PHP string and the JSON number forms alike."""
    assert as_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Y", True),
        ("1", True),
        (1, True),
        ("true", True),
        (True, True),
        ("N", False),
        ("0", False),
        (0, False),
        ("", False),
        (None, False),
    ],
)
def test_as_bool_flags(value: Any, expected: bool) -> None:
    """Bitrix flags: Y/1/true are true in any form; N/0/empty are false."""
    assert as_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        ("0", False),
        (0, False),
        (None, False),
        (False, False),
        ({}, False),
        ("false", True),
        ("N", True),
        ("1", True),
        (1, True),
        (True, True),
        ({"a": 1}, True),
    ],
)
def test_php_truthy_is_the_php_bool_cast(value: Any, expected: bool) -> None:
    """(bool) in PHP: only empty, "0", 0 and null are false — "false" is true."""
    assert php_truthy(value) is expected


def test_as_list_as_dict_as_str_cover_both_encodings() -> None:
    """The same logical array read from a form or from JSON gives the same list."""
    assert as_list({"1": "b", "0": "a", "10": "c"}) == ["a", "b", "c"]
    assert as_list(["a", "b"]) == ["a", "b"]
    assert as_list("x") == ["x"]
    assert as_list(None) == []
    assert as_dict(["a"]) == {"0": "a"}
    assert as_dict("x") == {}
    assert as_str(5) == "5"
    assert as_str(5.0) == "5"
    assert as_str(True) == "1"
    assert get_ci({"Process_ID": "p"}, "process_id") == "p"


def test_build_query_is_php_http_build_query() -> None:
    """Nested dicts and lists become bracketed, percent-encoded keys."""
    text = build_query({"filter": {">ID": 5}, "select": ["ID", "TITLE"], "skip": None})
    assert text == "filter%5B%3EID%5D=5&select%5B0%5D=ID&select%5B1%5D=TITLE"
    assert parse_query(text) == {"filter": {">ID": "5"}, "select": {"0": "ID", "1": "TITLE"}}


_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]"),
    min_size=1,
    max_size=6,
).filter(lambda k: k.strip(" ") == k and "." not in k and " " not in k)
_leaf = st.text(max_size=8)
_tree: st.SearchStrategy[Any] = st.recursive(
    _leaf, lambda inner: st.dictionaries(_keys, inner, min_size=1, max_size=3), max_leaves=8
)


@given(st.dictionaries(_keys, _tree, max_size=4))
def test_round_trip_through_build_query(data: dict[str, Any]) -> None:
    """parse_query(build_query(d)) == d for nested string dicts (any characters)."""
    assert parse_query(build_query(data)) == data
