"""The ``batch`` method: order, halt, $result substitution, limits on size and nesting,
the PHP-shaped answer, and auth_connector inheritance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from connector.emulator.app import Emulator
from connector.emulator.batch import php_array, substitute
from connector.emulator.context import CallContext
from connector.emulator.params import as_int, build_query
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult
from connector.emulator.rest_errors import RestError
from tests.emulator.conftest import echo

SECTIONS = {"result", "result_error", "result_total", "result_next", "result_time"}


def numbers(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """A list method: items {ID, NAME} from ``start``, 3 per page of 7, with total/next."""
    start = as_int(params.get("start"), 0) or 0
    items = [
        {"ID": str(i), "NAME": f"n{i}", "NESTED": {"DEEP": [10 * i]}}
        for i in range(start + 1, min(start + 3, 7) + 1)
    ]
    nxt = start + 3 if start + 3 < 7 else None
    return MethodResult(items, total=7, next=nxt)


def fail(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    raise RestError("", "Not found", 400)


async def batch(
    http: httpx.AsyncClient, creds: dict[str, Any], cmd: Any, **extra: Any
) -> dict[str, Any]:
    r = await http.post(
        "/rest/batch.json", json={"auth": creds["access_token"], "cmd": cmd, **extra}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_results_in_order_with_totals_and_time(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """Each key gets its result; list commands fill result_total/result_next; every
    executed command has a result_time entry; the outer call has its own time."""
    method("test.numbers", numbers)
    body = await batch(
        http,
        app_creds,
        {"first": "test.numbers", "second": "test.numbers?start=6", "t": "server.time"},
    )
    result = body["result"]
    assert set(result) == SECTIONS
    assert list(result["result"]) == ["first", "second", "t"]
    assert [i["ID"] for i in result["result"]["first"]] == ["1", "2", "3"]
    assert [i["ID"] for i in result["result"]["second"]] == ["7"]
    assert result["result_total"] == {"first": 7, "second": 7}
    assert result["result_next"] == {"first": 3}
    assert set(result["result_time"]) == {"first", "second", "t"}
    assert result["result_error"] == []
    assert "time" in body


async def test_form_encoded_batch_with_double_encoded_commands(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """A form POST with ``cmd[key]=method%3Fparams`` (double encoding) and halt=0."""
    method("test.echo", echo)
    inner = build_query({"fields": {"TITLE": "A&B = c"}, "id": [1, 2]})
    form = build_query(
        {"auth": app_creds["access_token"], "halt": 0, "cmd": {"e": f"test.echo?{inner}"}}
    )
    r = await http.post(
        "/rest/batch", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    got = r.json()["result"]["result"]["e"]["params"]
    assert got == {"fields": {"TITLE": "A&B = c"}, "id": {"0": "1", "1": "2"}}


async def test_result_references_including_nested_paths(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """``$result[key][0][ID]`` splices a value into a string; a value that is exactly a
    reference takes the referenced structure; deep paths resolve."""
    method("test.numbers", numbers)
    method("test.echo", echo)
    cmd = {
        "list": "test.numbers",
        "e1": "test.echo?id=$result[list][1][ID]&title=Item+$result[list][0][NAME]",
        "e2": "test.echo?deep=$result[list][2][NESTED][DEEP][0]&whole=$result[list][0]",
        "e3": "test.echo?next=$next[list]&total=$total[list]&miss=$result[list][9][ID]",
    }
    res = (await batch(http, app_creds, cmd))["result"]["result"]
    assert res["e1"]["params"] == {"id": "2", "title": "Item n1"}
    assert res["e2"]["params"]["deep"] == 30  # an exact reference keeps the JSON type
    assert res["e2"]["params"]["whole"] == {"ID": "1", "NAME": "n1", "NESTED": {"DEEP": [10]}}
    assert res["e3"]["params"]["next"] == 3
    assert res["e3"]["params"]["total"] == 7
    # A path that runs out stops where it stood (processBatchElement): the whole list.
    assert [i["ID"] for i in res["e3"]["params"]["miss"]] == ["1", "2", "3"]


def test_substitute_follows_the_rest_module_quirks() -> None:
    """Inside a longer string the reference consumes the token up to white space; a
    non-scalar target leaves the text alone."""
    outputs: dict[str, dict[str, Any]] = {
        "result": {"a": {"ID": 5, "L": [1]}},
        "next": {},
        "total": {},
        "time": {},
        "error": {},
    }
    assert substitute("$result[a][ID]", outputs) == 5
    assert substitute("x$result[a][ID]y z", outputs) == "x5 z"
    assert substitute("x $result[a][L]", outputs) == "x $result[a][L]"
    assert substitute("no refs", outputs) == "no refs"


async def test_halt_stops_after_the_first_error(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """halt=1: commands after a failing one do not run and do not appear; halt=0 runs
    them; per-command errors never fail the outer call."""
    method("test.fail", fail)
    cmd = {"a": "server.time", "b": "test.fail", "c": "server.time"}
    halted = (await batch(http, app_creds, cmd, halt=1))["result"]
    assert list(halted["result"]) == ["a"]
    assert halted["result_error"] == {"b": {"error": "", "error_description": "Not found"}}
    full = (await batch(http, app_creds, cmd, halt=0))["result"]
    assert list(full["result"]) == ["a", "c"]


async def test_list_commands_answer_php_lists(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """cmd as a JSON list → sections are JSON lists (PHP keys 0..n-1); a gap in the keys
    (a failed command) turns a section into an object, as json_encode does."""
    method("test.fail", fail)
    ok = (await batch(http, app_creds, ["server.time", "profile"]))["result"]
    assert isinstance(ok["result"], list) and len(ok["result"]) == 2
    assert ok["result_total"] == [] and ok["result_next"] == [] and ok["result_error"] == []
    gap = (await batch(http, app_creds, ["server.time", "test.fail", "profile"]))["result"]
    assert set(gap["result"]) == {"0", "2"}
    assert set(gap["result_error"]) == {"1"}


async def test_more_than_50_commands(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """The first 50 run; each one past 50 answers ERROR_BATCH_LENGTH_EXCEEDED."""
    cmd = {f"k{i}": "server.time" for i in range(53)}
    result = (await batch(http, app_creds, cmd))["result"]
    assert len(result["result"]) == 50
    assert set(result["result_error"]) == {"k50", "k51", "k52"}
    assert result["result_error"]["k50"]["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


async def test_nested_batch_is_refused(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """A batch inside a batch answers ERROR_BATCH_METHOD_NOT_ALLOWED for that command."""
    inner = build_query({"cmd": {"x": "server.time"}})
    result = (await batch(http, app_creds, {"n": f"batch?{inner}"}))["result"]
    assert result["result"] == []
    assert result["result_error"]["n"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert emulator.requests("batch")[0].sub_calls[0]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"


async def test_unknown_methods_and_scopes_fail_per_command(
    emulator: Emulator, http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """An unknown method and a method outside the app's scopes fail only their command."""
    method("test.crmonly", echo, scope="crm")
    creds = emulator.install_app(scopes=("user",))
    result = (await batch(http, creds, {"a": "no.such", "b": "test.crmonly", "c": "server.time"}))[
        "result"
    ]
    assert result["result_error"]["a"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert result["result_error"]["b"]["error"] == "insufficient_scope"
    assert list(result["result"]) == ["c"]


async def test_sub_commands_inherit_auth_connector_unless_they_carry_one(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    method: Callable[..., None],
) -> None:
    """The outer auth_connector reaches every sub-command; a sub-command's own wins; it
    never shows up in the method parameters; a sub-command ``auth`` is ignored; the
    request log shows each sub-command with its effective connector."""
    method("test.echo", echo)
    cmd = {"a": "test.echo?x=1", "b": "test.echo?auth_connector=other&auth=zzz&x=2"}
    res = (await batch(http, app_creds, cmd, auth_connector="erp"))["result"]["result"]
    assert res["a"]["auth_connector"] == "erp"
    assert res["b"]["auth_connector"] == "other"
    assert res["a"]["params"] == {"x": "1"}
    assert res["b"]["params"] == {"x": "2"}
    [entry] = emulator.requests("batch")
    assert [(c["key"], c["method"], c["auth_connector"], c["error"]) for c in entry.sub_calls] == [
        ("a", "test.echo", "erp", None),
        ("b", "test.echo", "other", None),
    ]


async def test_sub_command_faults_and_operating_limits_apply_per_command(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """An injected 500 on one method fails that command only."""
    emulator.set_faults(fail_methods={"profile": 1})
    result = (await batch(http, app_creds, {"p": "profile", "t": "server.time"}))["result"]
    assert result["result_error"]["p"]["error"] == "INTERNAL_SERVER_ERROR"
    assert "t" in result["result"]


def test_php_array_rendering() -> None:
    """Sequential numeric keys → list; empty → []; anything else → object."""
    assert php_array({}) == []
    assert php_array({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_array({"1": "a"}) == {"1": "a"}
    assert php_array({"k": 1}) == {"k": 1}
