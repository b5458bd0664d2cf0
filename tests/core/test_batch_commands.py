"""Building batches (≤50, double encoding, $result chaining) and splitting their answers."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.batch_commands import (
    MAX_COMMANDS,
    Command,
    build_batch,
    chunked,
    command_text,
    result_ref,
    split_batch_result,
)
from connector.core.php_query import build_query, flatten
from connector.emulator.params import parse_query
from connector.errors import FatalPortalError, RejectedError, RetriableError

NOW = 1_700_000_000.0


def test_php_query_flattens_nested_values() -> None:
    """Dicts become [KEY], lists numbered keys, bools 1/0, None is left out."""
    pairs = list(
        flatten(
            {
                "fields": {"TITLE": "A & B", "PHONE": [{"VALUE": "+1", "VALUE_TYPE": "WORK"}]},
                "select": ["ID", "TITLE"],
                "flag": True,
                "off": False,
                "skip": None,
            }
        )
    )

    assert pairs == [
        ("fields[TITLE]", "A & B"),
        ("fields[PHONE][0][VALUE]", "+1"),
        ("fields[PHONE][0][VALUE_TYPE]", "WORK"),
        ("select[0]", "ID"),
        ("select[1]", "TITLE"),
        ("flag", "1"),
        ("off", "0"),
    ]


def test_php_query_round_trips_through_php_parsing() -> None:
    """What we encode, a PHP-style parser reads back as the same nested structure."""
    params = {"filter": {">ID": 10, "%TITLE": "a=b&c"}, "order": {"ID": "ASC"}, "start": -1}

    parsed = parse_query(build_query(params))

    assert (parsed) == {
        "filter": {">ID": "10", "%TITLE": "a=b&c"},
        "order": {"ID": "ASC"},
        "start": "-1",
    }


def test_php_query_refuses_objects() -> None:
    """A value that is not a scalar, list or dict is a programming error."""
    with pytest.raises(TypeError):
        build_query({"x": object()})


def test_result_ref_builds_chain_reference() -> None:
    """$result[key][path...] is the portal's syntax for an earlier command's result."""
    assert result_ref("p0", 49, "ID") == "$result[p0][49][ID]"


def test_batch_is_double_encoded() -> None:
    """Sub-command queries are encoded once in cmd and again when the batch is sent."""
    commands = [
        Command("a", "crm.company.add", {"fields": {"TITLE": "Ann & Co = 100%"}}),
        Command("b", "crm.company.get", {"id": result_ref("a")}),
    ]

    batch = build_batch(commands, common={"auth_connector": "erp"})
    outer = build_query(batch)
    decoded_once = parse_query(outer)

    assert decoded_once["halt"] == "0"
    sub = decoded_once["cmd"]["a"]
    method, _, query = sub.partition("?")
    assert method == "crm.company.add"
    assert parse_query(query) == {"fields": {"TITLE": "Ann & Co = 100%"}, "auth_connector": "erp"}
    assert parse_query(decoded_once["cmd"]["b"].partition("?")[2])["id"] == "$result[a]"
    # the raw outer string carries the sub-query's own escapes, escaped again
    assert "%2526" in outer
    assert "Ann & Co" not in unquote(outer.split("cmd[a]=")[1].split("&")[0])


def test_command_keeps_its_own_connector() -> None:
    """A command's own parameter wins over the common one."""
    text = command_text(
        Command("k", "event.offline.get", {"auth_connector": "other"}), {"auth_connector": "erp"}
    )

    assert parse_qsl(text.partition("?")[2]) == [("auth_connector", "other")]


def test_command_without_params_is_just_the_method() -> None:
    """No parameters, no question mark."""
    assert command_text(Command("t", "server.time")) == "server.time"


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ([], "at least one"),
        ([Command(f"c{i}", "x.y") for i in range(MAX_COMMANDS + 1)], "at most 50"),
        ([Command("a", "x.y"), Command("a", "x.z")], "used twice"),
        ([Command("a b", "x.y")], "letters"),
        ([Command("a", "batch")], "another batch"),
        ([Command("a", "x.y?z=1")], "bad method"),
    ],
)
def test_bad_batches_are_refused(commands: list[Command], message: str) -> None:
    """Empty, oversized, duplicate-key, badly keyed and nested batches raise ValueError."""
    with pytest.raises(ValueError, match=message):
        build_batch(commands)


def test_halt_flag() -> None:
    """halt defaults to 0 and is 1 when asked."""
    assert build_batch([Command("a", "x.y")])["halt"] == 0
    assert build_batch([Command("a", "x.y")], halt=True)["halt"] == 1


def test_chunked_keeps_order_and_size() -> None:
    """120 commands make chunks of 50, 50, 20 in the original order."""
    commands = [Command(f"c{i}", "x.y") for i in range(120)]

    chunks = list(chunked(commands))

    assert [len(c) for c in chunks] == [50, 50, 20]
    assert commands == [c for chunk in chunks for c in chunk]
    with pytest.raises(ValueError):
        list(chunked(commands, size=51))


def test_split_result_per_command() -> None:
    """Results, errors, totals, next and times go back to their own command."""
    commands = [
        Command("a", "crm.deal.list"),
        Command("b", "crm.deal.get"),
        Command("c", "crm.deal.add"),
    ]
    answer = {
        "result": {"a": [{"ID": "1"}], "c": 7},
        "result_error": {"b": {"error": "", "error_description": "Not found"}},
        "result_total": {"a": 1},
        "result_next": [],
        "result_time": {"a": {"duration": 0.1}},
    }

    out = split_batch_result(commands, answer, now=NOW)

    assert list(out) == ["a", "b", "c"]
    assert out["a"].ok and out["a"].result == [{"ID": "1"}]
    assert out["a"].total == 1 and out["a"].next is None
    assert out["a"].time == {"duration": 0.1}
    assert isinstance(out["b"].error, RejectedError) and not out["b"].ok
    assert out["c"].result == 7


def test_split_accepts_empty_sections_as_lists() -> None:
    """PHP-empty sections arrive as [] and are read as empty maps."""
    commands = [Command("a", "x.y")]
    answer = {
        "result": {"a": True},
        "result_error": [],
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }

    out = split_batch_result(commands, answer, now=NOW)

    assert out["a"].ok and out["a"].result is True


def test_halted_commands_are_marked_not_executed() -> None:
    """With halt=1 the commands after a failure appear nowhere: executed=False."""
    commands = [Command("a", "x.y"), Command("b", "x.y")]
    answer = {"result": [], "result_error": {"a": {"error": "OVERLOAD_LIMIT"}}}

    out = split_batch_result(commands, answer, now=NOW)

    assert isinstance(out["a"].error, FatalPortalError)
    assert not out["b"].executed
    assert out["b"].error is not None and out["b"].error.code == "BATCH_HALTED"


def test_malformed_answer_is_retriable_for_every_command() -> None:
    """A batch answer without sections gives each command a retriable error."""
    out = split_batch_result([Command("a", "x.y")], "oops", now=NOW)

    assert isinstance(out["a"].error, RetriableError)


def test_numeric_values_in_totals() -> None:
    """String totals and next values become ints; junk becomes None."""
    answer = {"result": {"a": []}, "result_total": {"a": "5"}, "result_next": {"a": "x"}}

    out = split_batch_result([Command("a", "x.y")], answer, now=NOW)

    assert out["a"].total == 5
    assert out["a"].next is None


_KEYS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789><=!%@", min_size=1, max_size=8)
_SCALARS = st.text(max_size=20) | st.integers(-(10**6), 10**6)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(_KEYS, inner, min_size=1, max_size=3)
    ),
    max_leaves=10,
)


def _as_php(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _as_php(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): _as_php(v) for i, v in enumerate(value)}
    return str(value)


@given(st.dictionaries(_KEYS.filter(lambda k: not k[0].isdigit()), _VALUES, max_size=4))
def test_php_query_round_trip_property(params: dict[str, Any]) -> None:
    """Any nested params survive encoding and PHP-style parsing (as PHP strings)."""
    assert parse_query(build_query(params)) == _as_php(params)
