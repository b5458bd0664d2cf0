"""The offline queue (digest §7.4–§7.12, §11.1 "Offline queue", §12) through its REST
handlers, called directly with a Portal and a CallContext."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connector.emulator.context import CallContext
from connector.emulator.offline_queue import PURGE_AGE, message_id_for, php_json
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

APP = "local.app1"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def app_ctx(
    connector: str = "OneC",
    *,
    client_id: str = APP,
    admin: bool = True,
    user_id: int = 1,
    webhook: bool = False,
) -> CallContext:
    return CallContext(
        client_id=client_id,
        user_id=user_id,
        is_admin=admin,
        auth_connector=connector,
        via_webhook=webhook,
    )


def call(
    portal: Portal, ctx: CallContext, method: str, params: dict[str, Any] | None = None
) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    return entry[0](portal, ctx, dict(params or {}))


def rest_error(
    portal: Portal, ctx: CallContext, method: str, params: dict[str, Any] | None = None
) -> RestError:
    with pytest.raises(RestError) as info:
        call(portal, ctx, method, params)
    return info.value


@pytest.fixture
def portal() -> Portal:
    p = Portal()
    p.events.bind(APP, "ONCRMLEADUPDATE", connector_id="OneC")
    p.events.bind(APP, "ONCRMLEADADD", connector_id="OneC")
    p.events.bind(APP, "ONCRMLEADDELETE", connector_id="OneC")
    return p


def leads(portal: Portal, count: int) -> list[int]:
    """Create leads as a UI user (each queues one ONCRMLEADADD)."""
    return [portal.crm.add(None, "lead", {"TITLE": f"L{i}"}) for i in range(count)]


def touch(portal: Portal, lead_id: int, user_id: int = 1) -> None:
    portal.crm.update(None, "lead", lead_id, {"COMMENTS": "x"}, user_id=user_id)


# ---- MESSAGE_ID ---------------------------------------------------------------------


def test_message_id_reproduces_the_seed_samples() -> None:
    """md5(NAME|compact JSON) gives the seed's own hashes for leads 28 and 27 (§12)."""
    assert (
        message_id_for("ONCRMLEADUPDATE", {"FIELDS": {"ID": 28}})
        == "438d4ec3d329464c4bb9909db4c7a19b"
    )
    assert (
        message_id_for("ONCRMLEADUPDATE", {"FIELDS": {"ID": 27}})
        == "7bf367ea2e4c9b6a8c3adac4a416627c"
    )


def test_php_json_escapes_slashes_and_non_ascii() -> None:
    """EVENT_DATA is hashed as PHP's json_encode writes it."""
    assert php_json({"a": "x/y", "b": "é"}) == '{"a":"x\\/y","b":"\\u00e9"}'


def test_queued_record_has_the_seed_message_id(portal: Portal) -> None:
    """A firing for lead 28 is stored under the seed's MESSAGE_ID."""
    ui = CallContext(client_id=None, user_id=1, is_admin=True)
    portal.events.fire(ui, "ONCRMLEADUPDATE", {"FIELDS": {"ID": 28}})
    events = call(portal, app_ctx(), "event.offline.get").result["events"]
    assert [e["MESSAGE_ID"] for e in events] == ["438d4ec3d329464c4bb9909db4c7a19b"]


# ---- coalescing ---------------------------------------------------------------------


def test_firings_for_the_same_data_merge_into_one_record(portal: Portal) -> None:
    """Five updates of one lead leave one record; TS, data and user are the latest (A5)."""
    (lead,) = leads(portal, 1)
    touch(portal, lead)
    first = next(r for r in portal.queue.records() if r.event_name == "ONCRMLEADUPDATE")
    for n in range(4):
        portal.clock.advance(10)
        touch(portal, lead, user_id=2 if n == 3 else 1)
    updates = [r for r in portal.queue.records() if r.event_name == "ONCRMLEADUPDATE"]
    assert len(updates) == 1
    assert updates[0].id == first.id
    assert updates[0].event_additional == {"user_id": "2"}
    row = call(
        portal, app_ctx(), "event.offline.list", {"filter": {"=EVENT_NAME": "ONCRMLEADUPDATE"}}
    ).result[0]
    assert row["TIMESTAMP_X"] == portal.clock.iso()


def test_add_update_delete_are_separate_records(portal: Portal) -> None:
    """ADD, UPDATE and DELETE of one entity have different MESSAGE_IDs (§7.4)."""
    (lead,) = leads(portal, 1)
    touch(portal, lead)
    portal.crm.delete(None, "lead", lead)
    names = sorted(r.event_name for r in portal.queue.records())
    assert names == ["ONCRMLEADADD", "ONCRMLEADDELETE", "ONCRMLEADUPDATE"]
    assert len({r.message_id for r in portal.queue.records()}) == 3


# ---- event.offline.get, simple scheme -------------------------------------------------


def test_simple_get_returns_and_deletes_with_null_process_id(portal: Portal) -> None:
    """Default get: records come back and are deleted; process_id is null (§7.5)."""
    leads(portal, 3)
    result = call(portal, app_ctx(), "event.offline.get").result
    assert result["process_id"] is None
    assert len(result["events"]) == 3
    assert portal.queue.records() == []


def test_get_record_shape_and_json_types(portal: Portal) -> None:
    """ID string, EVENT_DATA.FIELDS.ID number, user_id string, ISO TIMESTAMP_X (A15)."""
    (lead,) = leads(portal, 1)
    event = call(portal, app_ctx(), "event.offline.get").result["events"][0]
    assert set(event) == {
        "ID",
        "TIMESTAMP_X",
        "EVENT_NAME",
        "EVENT_DATA",
        "EVENT_ADDITIONAL",
        "MESSAGE_ID",
    }
    assert isinstance(event["ID"], str) and event["ID"].isdigit()
    assert event["EVENT_DATA"] == {"FIELDS": {"ID": lead}}
    assert event["EVENT_ADDITIONAL"] == {"user_id": "1"}
    assert ISO.match(event["TIMESTAMP_X"])
    assert re.fullmatch(r"[0-9a-f]{32}", event["MESSAGE_ID"])


def test_default_limit_is_fifty(portal: Portal) -> None:
    """60 waiting records drain as 50 then 10 (A7)."""
    leads(portal, 60)
    first = call(portal, app_ctx(), "event.offline.get").result["events"]
    second = call(portal, app_ctx(), "event.offline.get").result["events"]
    assert (len(first), len(second)) == (50, 10)


def test_limit_is_honoured_and_not_capped(portal: Portal) -> None:
    """limit=3 returns 3; limit=70 returns more than 50 (no cap in the source)."""
    leads(portal, 75)
    assert len(call(portal, app_ctx(), "event.offline.get", {"limit": "3"}).result["events"]) == 3
    assert len(call(portal, app_ctx(), "event.offline.get", {"limit": 70}).result["events"]) == 70


@pytest.mark.parametrize("limit", ["0", -5, "abc"])
def test_non_positive_limit_is_an_argument_error(portal: Portal, limit: object) -> None:
    """limit ≤ 0 (PHP intval) → 400 ERROR_ARGUMENT "Value must be positive integer"."""
    err = rest_error(portal, app_ctx(), "event.offline.get", {"limit": limit})
    assert (err.status, err.code, err.description) == (
        400,
        "ERROR_ARGUMENT",
        "Value must be positive integer",
    )


def test_default_order_is_timestamp_ascending(portal: Portal) -> None:
    """A record refreshed by a later firing moves behind newer records (A16)."""
    a, b = leads(portal, 2)
    touch(portal, a)
    portal.clock.advance(5)
    touch(portal, b)
    portal.clock.advance(5)
    touch(portal, a)
    events = call(
        portal, app_ctx(), "event.offline.get", {"filter": {"=EVENT_NAME": "ONCRMLEADUPDATE"}}
    ).result["events"]
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in events] == [b, a]


def test_order_by_id_descending(portal: Portal) -> None:
    """order={ID: DESC} reverses the record IDs."""
    leads(portal, 3)
    events = call(portal, app_ctx(), "event.offline.get", {"order": {"ID": "desc"}}).result
    ids = [int(e["ID"]) for e in events["events"]]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"order": {"ID": "UP"}}, "Order direction should be one of {ASC|DESC}"),
        ({"order": {"PROCESS_ID": "ASC"}}, "Order field not allowed: PROCESS_ID"),
        ({"order": "ID"}, "The order is not an array."),
        ({"filter": {"=PROCESS_ID": "x"}}, "Filter field not allowed: PROCESS_ID"),
        ({"filter": {"!ID": 1}}, "Filter operation not allowed: !"),
        ({"filter": {"=ID": [1, 2]}}, "The value of an argument 'ID' has an invalid type"),
        ({"filter": "ID"}, "The filter is not an array."),
    ],
)
def test_bad_filter_and_order_are_argument_errors(
    portal: Portal, params: dict[str, Any], text: str
) -> None:
    """Unknown fields, operators, directions and non-scalar values are refused."""
    err = rest_error(portal, app_ctx(), "event.offline.get", params)
    assert (err.code, err.description) == ("ERROR_ARGUMENT", text)


def test_filter_by_event_name_and_id(portal: Portal) -> None:
    """filter[=EVENT_NAME] and filter[>=ID] select records; the rest stay queued."""
    ids = leads(portal, 4)
    for lead in ids:
        touch(portal, lead)
    records = portal.queue.records()
    cut = records[5].id
    got = call(
        portal,
        app_ctx(),
        "event.offline.get",
        {"filter": {"=EVENT_NAME": "ONCRMLEADUPDATE", ">=ID": str(cut)}},
    ).result
    assert {int(e["ID"]) for e in got["events"]} == {r.id for r in records[5:]}
    assert len(portal.queue.records()) == 5


def test_filter_by_message_id_and_timestamp(portal: Portal) -> None:
    """filter[=MESSAGE_ID] and filter[<TIMESTAMP_X] (REST date-time) work."""
    a, b = leads(portal, 2)
    stamp = portal.clock.iso()
    portal.clock.advance(100)
    touch(portal, a)
    mid = message_id_for("ONCRMLEADUPDATE", {"FIELDS": {"ID": a}})
    by_mid = call(
        portal, app_ctx(), "event.offline.get", {"clear": 0, "filter": {"=MESSAGE_ID": mid}}
    ).result["events"]
    assert [e["MESSAGE_ID"] for e in by_mid] == [mid]
    older = call(
        portal, app_ctx(), "event.offline.get", {"filter": {"<=TIMESTAMP_X": stamp}}
    ).result["events"]
    assert sorted(e["EVENT_DATA"]["FIELDS"]["ID"] for e in older) == [a, b]
    assert all(e["EVENT_NAME"] == "ONCRMLEADADD" for e in older)


# ---- complex scheme --------------------------------------------------------------------


def test_clear0_locks_records_under_a_fresh_process_id(portal: Portal) -> None:
    """clear=0 returns a 32-char process_id; the records stay, locked, invisible to
    other gets (§7.6)."""
    leads(portal, 2)
    first = call(portal, app_ctx(), "event.offline.get", {"clear": "0"}).result
    assert re.fullmatch(r"[a-z0-9]{32}", first["process_id"])
    assert len(first["events"]) == 2
    assert {r.process_id for r in portal.queue.records()} == {first["process_id"]}
    again = call(portal, app_ctx(), "event.offline.get", {"clear": "0"}).result
    assert again["events"] == []
    assert again["process_id"] != first["process_id"]


def test_locked_record_does_not_absorb_new_firings(portal: Portal) -> None:
    """A firing for locked data creates a second record with the same MESSAGE_ID."""
    (lead,) = leads(portal, 1)
    touch(portal, lead)
    locked = call(
        portal,
        app_ctx(),
        "event.offline.get",
        {"clear": 0, "filter": {"=EVENT_NAME": "ONCRMLEADUPDATE"}},
    ).result
    touch(portal, lead)
    rows = call(
        portal, app_ctx(), "event.offline.list", {"filter": {"=EVENT_NAME": "ONCRMLEADUPDATE"}}
    ).result
    assert len(rows) == 2
    assert rows[0]["MESSAGE_ID"] == rows[1]["MESSAGE_ID"]
    assert [r["PROCESS_ID"] for r in rows] == [locked["process_id"], ""]


def test_reread_by_process_id_locks_nothing_new(portal: Portal) -> None:
    """get(process_id=p) returns p's records, echoes p, and takes no free ones."""
    leads(portal, 2)
    pid = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result["process_id"]
    leads(portal, 1)
    again = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "process_id": pid}).result
    assert again["process_id"] == pid
    assert len(again["events"]) == 2
    assert sum(1 for r in portal.queue.records() if r.process_id == "") == 1


def test_reread_with_clear1_deletes_the_whole_process(portal: Portal) -> None:
    """get(process_id=p, clear=1) echoes p and deletes every record of p, even ones
    a filter left out (rest module behaviour)."""
    leads(portal, 3)
    pid = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result["process_id"]
    first_id = portal.queue.records()[0].id
    got = call(
        portal, app_ctx(), "event.offline.get", {"process_id": pid, "filter": {"=ID": first_id}}
    ).result
    assert got["process_id"] == pid
    assert [int(e["ID"]) for e in got["events"]] == [first_id]
    assert portal.queue.records() == []


def test_simple_get_with_nothing_queued_keeps_null_process_id(portal: Portal) -> None:
    """An empty simple get answers {process_id: null, events: []}."""
    result = call(portal, app_ctx(), "event.offline.get").result
    assert result == {"process_id": None, "events": []}


# ---- event.offline.clear --------------------------------------------------------------


def _locked(portal: Portal, count: int) -> tuple[str, list[dict[str, Any]]]:
    leads(portal, count)
    result = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    return result["process_id"], result["events"]


def test_clear_without_ids_deletes_all_of_the_process(portal: Portal) -> None:
    """clear(process_id) removes every record of that process only (A8)."""
    pid, _ = _locked(portal, 3)
    leads(portal, 1)
    assert call(portal, app_ctx(), "event.offline.clear", {"process_id": pid}).result is True
    assert [r.process_id for r in portal.queue.records()] == [""]


def test_clear_by_record_ids(portal: Portal) -> None:
    """id[] restricts the deletion to those queue record IDs."""
    pid, events = _locked(portal, 3)
    call(
        portal,
        app_ctx(),
        "event.offline.clear",
        {"process_id": pid, "id": {"0": events[0]["ID"], "1": events[2]["ID"]}},
    )
    assert [str(r.id) for r in portal.queue.records()] == [events[1]["ID"]]


def test_message_id_takes_precedence_over_id(portal: Portal) -> None:
    """With both message_id[] and id[], only message_id[] is used."""
    pid, events = _locked(portal, 3)
    call(
        portal,
        app_ctx(),
        "event.offline.clear",
        {"process_id": pid, "id": [events[0]["ID"]], "message_id": [events[1]["MESSAGE_ID"]]},
    )
    remaining = {str(r.id) for r in portal.queue.records()}
    assert remaining == {events[0]["ID"], events[2]["ID"]}


def test_empty_id_list_deletes_all_of_the_process(portal: Portal) -> None:
    """An empty message_id[] / id[] means no restriction (§12)."""
    pid, _ = _locked(portal, 2)
    call(portal, app_ctx(), "event.offline.clear", {"process_id": pid, "message_id": []})
    assert portal.queue.records() == []


def test_clear_answers_true_when_nothing_matched(portal: Portal) -> None:
    """An unknown process id clears nothing and still answers true."""
    leads(portal, 1)
    result = call(portal, app_ctx(), "event.offline.clear", {"process_id": "x" * 32})
    assert result.result is True
    assert len(portal.queue.records()) == 1


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({}, "Argument 'PROCESS_ID' is null or empty"),
        ({"process_id": "p", "message_id": "abc"}, "Value must be array of MESSAGE_ID values"),
        ({"process_id": "p", "message_id": ["short"]}, "Value must be array of MESSAGE_ID values"),
        ({"process_id": "p", "id": ["0"]}, "Value must be array of integers"),
        ({"process_id": "p", "id": "5"}, "Value must be array of integers"),
    ],
)
def test_clear_argument_errors(portal: Portal, params: dict[str, Any], text: str) -> None:
    """process_id is required; id[]/message_id[] must be arrays of valid values."""
    err = rest_error(portal, app_ctx(), "event.offline.clear", params)
    assert (err.code, err.description) == ("ERROR_ARGUMENT", text)


def test_clear_only_touches_the_callers_partition(portal: Portal) -> None:
    """A process id used with another connector deletes nothing there."""
    pid, _ = _locked(portal, 2)
    call(portal, app_ctx("Other"), "event.offline.clear", {"process_id": pid})
    call(
        portal, app_ctx("OneC", client_id="local.app2"), "event.offline.clear", {"process_id": pid}
    )
    assert len(portal.queue.records()) == 2


# ---- event.offline.error --------------------------------------------------------------


def test_error_flags_and_detaches_the_callers_copy(portal: Portal) -> None:
    """error(p, mid): the record gets ERROR=1, PROCESS_ID='' and survives clear(p)."""
    pid, events = _locked(portal, 2)
    mid = events[0]["MESSAGE_ID"]
    assert (
        call(
            portal, app_ctx(), "event.offline.error", {"process_id": pid, "message_id": [mid]}
        ).result
        is True
    )
    call(portal, app_ctx(), "event.offline.clear", {"process_id": pid})
    rows = call(portal, app_ctx(), "event.offline.list").result
    assert [(r["MESSAGE_ID"], r["ERROR"], r["PROCESS_ID"]) for r in rows] == [(mid, "1", "")]


def test_errored_record_is_hidden_and_absorbs_later_firings(portal: Portal) -> None:
    """Later firings merge into the errored record; error=0 gets never return it."""
    (lead,) = leads(portal, 1)
    call(portal, app_ctx(), "event.offline.get")
    touch(portal, lead)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    record_id = got["events"][0]["ID"]
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][0]["MESSAGE_ID"]]},
    )
    portal.clock.advance(30)
    touch(portal, lead, user_id=2)
    assert call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result["events"] == []
    rows = call(portal, app_ctx(), "event.offline.list").result
    assert len(rows) == 1
    assert rows[0]["ID"] == record_id
    assert rows[0]["ERROR"] == "1"
    assert rows[0]["EVENT_ADDITIONAL"] == {"user_id": "2"}
    assert rows[0]["TIMESTAMP_X"] == portal.clock.iso()


def test_error_folds_in_waiting_and_foreign_locked_copies(portal: Portal) -> None:
    """Step 1 deletes ERROR=0 copies outside the caller's process, free or locked by
    another process; that process's later clear is a no-op (A9)."""
    (lead,) = leads(portal, 1)
    call(portal, app_ctx(), "event.offline.get")
    touch(portal, lead)
    p1 = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    touch(portal, lead)
    p2 = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    touch(portal, lead)
    mid = p1["events"][0]["MESSAGE_ID"]
    assert len(portal.queue.records()) == 3
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": p1["process_id"], "message_id": [mid]},
    )
    records = portal.queue.records()
    assert [(str(r.id), r.error, r.process_id) for r in records] == [(p1["events"][0]["ID"], 1, "")]
    assert (
        call(portal, app_ctx(), "event.offline.clear", {"process_id": p2["process_id"]}).result
        is True
    )
    assert len(portal.queue.records()) == 1


def test_error_for_a_message_not_held_flags_nothing(portal: Portal) -> None:
    """Flagging a MESSAGE_ID the process does not hold only deletes other copies (A10)."""
    leads(portal, 1)
    mid = portal.queue.records()[0].message_id
    call(portal, app_ctx(), "event.offline.error", {"process_id": "z" * 32, "message_id": [mid]})
    assert portal.queue.records() == []


def test_error_with_empty_message_list_does_nothing(portal: Portal) -> None:
    """message_id=[] is accepted and changes nothing."""
    pid, _ = _locked(portal, 1)
    call(portal, app_ctx(), "event.offline.error", {"process_id": pid, "message_id": []})
    assert [r.process_id for r in portal.queue.records()] == [pid]


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"message_id": ["a" * 32]}, "Argument 'PROCESS_ID' is null or empty"),
        ({"process_id": "p"}, "Value must be array of MESSAGE_ID values"),
        ({"process_id": "p", "message_id": "a" * 32}, "Value must be array of MESSAGE_ID values"),
    ],
)
def test_error_argument_errors(portal: Portal, params: dict[str, Any], text: str) -> None:
    """process_id is required and message_id must be an array."""
    err = rest_error(portal, app_ctx(), "event.offline.error", params)
    assert (err.code, err.description) == ("ERROR_ARGUMENT", text)


def test_release_with_error1_clear1_rearms_the_flow(portal: Portal) -> None:
    """get(error=1) returns only errored records and deletes them; new firings flow
    again as ERROR=0 (§7.9)."""
    (lead,) = leads(portal, 1)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][0]["MESSAGE_ID"]]},
    )
    touch(portal, lead)
    released = call(portal, app_ctx(), "event.offline.get", {"error": 1}).result
    assert [e["EVENT_NAME"] for e in released["events"]] == ["ONCRMLEADADD"]
    assert [r.event_name for r in portal.queue.records()] == ["ONCRMLEADUPDATE"]
    portal.crm.add(None, "lead", {"TITLE": "n"})
    assert len(call(portal, app_ctx(), "event.offline.get").result["events"]) == 2


def test_release_with_error1_clear0_keeps_the_flag(portal: Portal) -> None:
    """error=1&clear=0 locks errored records but keeps ERROR=1; re-reading needs error=1;
    a new firing meanwhile creates a fresh ERROR=0 record; clear deletes it (A12)."""
    (lead,) = leads(portal, 1)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][0]["MESSAGE_ID"]]},
    )
    release = call(portal, app_ctx(), "event.offline.get", {"error": "1", "clear": "0"}).result
    pid = release["process_id"]
    assert [r.error for r in portal.queue.records()] == [1]
    assert (
        call(portal, app_ctx(), "event.offline.get", {"process_id": pid, "clear": 0}).result[
            "events"
        ]
        == []
    )
    assert (
        len(
            call(
                portal, app_ctx(), "event.offline.get", {"process_id": pid, "clear": 0, "error": 1}
            ).result["events"]
        )
        == 1
    )
    portal.crm.update(None, "lead", lead, {"TITLE": "t"})
    portal.crm.delete(None, "lead", lead)
    portal.crm.add(None, "lead", {"TITLE": "again"})
    call(portal, app_ctx(), "event.offline.clear", {"process_id": pid})
    assert all(r.error == 0 for r in portal.queue.records())
    assert len(portal.queue.records()) == 3


def test_error0_get_never_returns_errored_records(portal: Portal) -> None:
    """error=0 (default) and error=1 select disjoint sets (A11)."""
    leads(portal, 2)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 1}).result
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][0]["MESSAGE_ID"]]},
    )
    normal = call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result["events"]
    errored = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "error": 1}).result[
        "events"
    ]
    assert len(normal) == len(errored) == 1
    assert normal[0]["ID"] != errored[0]["ID"]


# ---- event.offline.list ---------------------------------------------------------------


def test_list_is_a_bare_array_with_locked_and_errored(portal: Portal) -> None:
    """list returns every state with PROCESS_ID and ERROR strings, ID ASC (§7.10)."""
    leads(portal, 3)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 2}).result
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][0]["MESSAGE_ID"]]},
    )
    result = call(portal, app_ctx(), "event.offline.list")
    assert isinstance(result.result, list)
    assert [int(r["ID"]) for r in result.result] == sorted(int(r["ID"]) for r in result.result)
    states = sorted((r["ERROR"], r["PROCESS_ID"] != "") for r in result.result)
    assert states == [("0", False), ("0", True), ("1", False)]
    assert result.total == 3 and result.next is None
    assert set(result.result[0]) == {
        "ID",
        "TIMESTAMP_X",
        "EVENT_NAME",
        "EVENT_DATA",
        "EVENT_ADDITIONAL",
        "MESSAGE_ID",
        "PROCESS_ID",
        "ERROR",
    }


def test_list_does_not_change_state(portal: Portal) -> None:
    """Listing twice gives the same answer and locks nothing."""
    leads(portal, 2)
    first = call(portal, app_ctx(), "event.offline.list").result
    assert call(portal, app_ctx(), "event.offline.list").result == first
    assert all(r.process_id == "" for r in portal.queue.records())


def test_list_pages_by_fifty(portal: Portal) -> None:
    """120 records: pages of 50 with next 50, 100, then none; total 120."""
    leads(portal, 120)
    page1 = call(portal, app_ctx(), "event.offline.list")
    page2 = call(portal, app_ctx(), "event.offline.list", {"start": page1.next})
    page3 = call(portal, app_ctx(), "event.offline.list", {"start": page2.next})
    assert (len(page1.result), page1.next, page1.total) == (50, 50, 120)
    assert (len(page2.result), page2.next) == (50, 100)
    assert (len(page3.result), page3.next) == (20, None)
    ids = [r["ID"] for p in (page1, page2, page3) for r in p.result]
    assert len(set(ids)) == 120


def test_list_filters_by_process_and_error(portal: Portal) -> None:
    """list accepts PROCESS_ID and ERROR in filter and order."""
    leads(portal, 3)
    pid = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 2}).result[
        "process_id"
    ]
    mine = call(
        portal,
        app_ctx(),
        "event.offline.list",
        {"filter": {"=PROCESS_ID": pid}, "order": {"ERROR": "ASC"}},
    ).result
    assert len(mine) == 2
    free = call(
        portal, app_ctx(), "event.offline.list", {"filter": {"=PROCESS_ID": "", "=ERROR": 0}}
    ).result
    assert len(free) == 1


# ---- parameters, partitions, permissions, plans -----------------------------------------


def test_parameter_names_are_case_insensitive(portal: Portal) -> None:
    """CLEAR, Limit, PROCESS_ID work like their lower-case forms (§12)."""
    leads(portal, 3)
    got = call(portal, app_ctx(), "event.offline.get", {"CLEAR": "0", "Limit": "2"}).result
    assert len(got["events"]) == 2 and got["process_id"]
    call(portal, app_ctx(), "event.offline.clear", {"PROCESS_ID": got["process_id"]})
    assert len(portal.queue.records()) == 1


def test_queue_is_partitioned_per_app_and_connector() -> None:
    """Each (app, connector) binding has its own records; a drain sees only its own."""
    p = Portal()
    p.events.bind(APP, "ONCRMDEALADD", connector_id="OneC")
    p.events.bind(APP, "ONCRMDEALADD", connector_id="")
    p.events.bind("local.app2", "ONCRMDEALADD", connector_id="OneC")
    p.crm.add(None, "deal", {"TITLE": "d"})
    assert len(p.queue.records()) == 3
    for ctx in (app_ctx("OneC"), app_ctx(""), app_ctx("OneC", client_id="local.app2")):
        assert len(call(p, ctx, "event.offline.list").result) == 1
        assert len(call(p, ctx, "event.offline.get").result["events"]) == 1
    assert call(p, app_ctx("Other"), "event.offline.get").result["events"] == []


@pytest.mark.parametrize(
    "method",
    ["event.offline.get", "event.offline.clear", "event.offline.error", "event.offline.list"],
)
def test_webhooks_and_app_less_callers_are_refused(portal: Portal, method: str) -> None:
    """Offline methods need app (OAuth) authorisation: 403 WRONG_AUTH_TYPE."""
    for ctx in (app_ctx(webhook=True), app_ctx(client_id="")):
        err = rest_error(portal, ctx, method, {"process_id": "p", "message_id": []})
        assert (err.status, err.code) == (403, "WRONG_AUTH_TYPE")


@pytest.mark.parametrize(
    "method",
    ["event.offline.get", "event.offline.clear", "event.offline.error", "event.offline.list"],
)
def test_non_admins_get_access_denied(portal: Portal, method: str) -> None:
    """Offline methods need an administrator: 403 ACCESS_DENIED "Access denied!"."""
    err = rest_error(
        portal, app_ctx(admin=False, user_id=2), method, {"process_id": "p", "message_id": []}
    )
    assert (err.status, err.code, err.description) == (403, "ACCESS_DENIED", "Access denied!")


def test_clear0_needs_the_extended_feature(portal: Portal) -> None:
    """Without rest_offline_extended, clear=0 → 403 WRONG_LICENSE; clear=1 works."""
    portal.with_plan("pro", extended_queue=False)
    leads(portal, 1)
    err = rest_error(portal, app_ctx(), "event.offline.get", {"clear": 0})
    assert (err.status, err.code) == (403, "WRONG_LICENSE")
    assert "extended offline events handling" in err.description
    assert len(call(portal, app_ctx(), "event.offline.get").result["events"]) == 1


def test_plan_without_offline_events_refuses_the_queue(portal: Portal) -> None:
    """offline_events off: event.offline.* answer WRONG_LICENSE and nothing is queued."""
    portal.with_plan("pro", offline_events=False)
    leads(portal, 1)
    assert portal.queue.records() == []
    err = rest_error(portal, app_ctx(), "event.offline.get")
    assert (err.status, err.code) == (403, "WRONG_LICENSE")


def test_auth_connector_is_ignored_below_pro() -> None:
    """On a plan without auth_connector the key is ignored: one '' partition (A1)."""
    p = Portal()
    p.with_plan("standard")
    call(p, app_ctx("OneC"), "event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    assert call(p, app_ctx("OneC"), "event.get").result == [
        {"event": "ONCRMLEADADD", "connector_id": "", "offline": 1}
    ]
    p.crm.add(None, "lead", {"TITLE": "x"})
    assert [r.connector_id for r in p.queue.records()] == [""]
    assert len(call(p, app_ctx("OneC"), "event.offline.get").result["events"]) == 1


def test_auth_connector_policy_error_answers_wrong_license() -> None:
    """With policy "error", an unlicensed auth_connector → 403 WRONG_LICENSE."""
    p = Portal()
    p.with_plan("basic")
    p.events.auth_connector_policy = "error"
    err = rest_error(p, app_ctx("OneC"), "event.offline.list")
    assert (err.code, err.description) == (
        "WRONG_LICENSE",
        "This feature is not enabled for the current license: auth_connector",
    )


@pytest.mark.parametrize(
    ("plan", "code", "value"),
    [
        ("pro", "rest_offline_extended", "Y"),
        ("standard", "rest_offline_extended", "N"),
        ("basic", "rest_auth_connector", "N"),
        ("enterprise", "rest_auth_connector", "Y"),
        ("pro", "no_such_feature", "N"),
    ],
)
def test_feature_get_reports_plan_switches(plan: str, code: str, value: str) -> None:
    """feature.get?CODE=… answers {"value": "Y"|"N"} from the plan profile."""
    p = Portal()
    p.with_plan(plan)
    assert call(p, app_ctx(), "feature.get", {"CODE": code}).result == {"value": value}


# ---- housekeeping ------------------------------------------------------------------------


def test_purge_deletes_old_locked_records_only(portal: Portal) -> None:
    """Locked records older than 2,952,000 s vanish; free and errored ones stay (A13)."""
    leads(portal, 3)
    got = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 2}).result
    call(
        portal,
        app_ctx(),
        "event.offline.error",
        {"process_id": got["process_id"], "message_id": [got["events"][1]["MESSAGE_ID"]]},
    )
    portal.clock.advance(PURGE_AGE - 10)
    assert len(call(portal, app_ctx(), "event.offline.list").result) == 3
    portal.clock.advance(20)
    rows = call(portal, app_ctx(), "event.offline.list").result
    assert sorted((r["ERROR"], r["PROCESS_ID"]) for r in rows) == [("0", ""), ("1", "")]
    assert (
        call(
            portal, app_ctx(), "event.offline.get", {"process_id": got["process_id"], "clear": 0}
        ).result["events"]
        == []
    )


def test_locked_records_are_never_released_by_time(portal: Portal) -> None:
    """Before the purge, a crashed process's records stay locked (never re-offered)."""
    leads(portal, 1)
    call(portal, app_ctx(), "event.offline.get", {"clear": 0})
    portal.clock.advance(PURGE_AGE // 2)
    assert call(portal, app_ctx(), "event.offline.get", {"clear": 0}).result["events"] == []


def test_empty_process_id_addresses_the_free_records(portal: Portal) -> None:
    """As in the rest module, process_id="" is not "missing": clear deletes the free
    records of the partition (locked ones stay) — a bug a client must not have."""
    leads(portal, 2)
    pid = call(portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 1}).result
    call(portal, app_ctx(), "event.offline.clear", {"process_id": ""})
    assert [r.process_id for r in portal.queue.records()] == [pid["process_id"]]
