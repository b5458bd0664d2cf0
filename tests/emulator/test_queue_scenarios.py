"""Scenario tests of digest §11.1 that concern the offline queue, plus a property test
over random fire/get/clear/error sequences."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.emulator.clock import Clock
from connector.emulator.context import CallContext
from connector.emulator.offline_queue import message_id_for
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

APP = "local.erp"
CONNECTOR = "OneC"


def app_ctx(connector: str = CONNECTOR) -> CallContext:
    return CallContext(client_id=APP, user_id=1, is_admin=True, auth_connector=connector)


def call(
    portal: Portal,
    method: str,
    params: dict[str, Any] | None = None,
    ctx: CallContext | None = None,
) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    return entry[0](portal, ctx or app_ctx(), dict(params or {}))


def get(portal: Portal, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = call(portal, "event.offline.get", params).result
    return result


def entity_ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["EVENT_DATA"]["FIELDS"]["ID"] for e in events]


@pytest.fixture
def portal() -> Portal:
    return bound_portal(Portal())


def bound_portal(p: Portal) -> Portal:
    """``p`` with the offline events of companies and contacts bound."""
    for entity in ("COMPANY", "CONTACT"):
        for action in ("ADD", "UPDATE", "DELETE"):
            call(p, "event.bind", {"event": f"ONCRM{entity}{action}", "event_type": "offline"})
    return p


def test_worker_crash_between_get_and_clear_is_resumed_by_process_id(portal: Portal) -> None:
    """A worker takes a batch with clear=0 and dies. A new worker's get does not see the
    batch; the journal's process_id re-reads it; the records are visible in list."""
    for n in range(3):
        portal.crm.add(None, "company", {"TITLE": f"C{n}"})
    batch = get(portal, clear=0)
    pid = batch["process_id"]
    # ... crash: nothing cleared. A restarted worker polls:
    assert get(portal, clear=0)["events"] == []
    listed = call(portal, "event.offline.list").result
    assert {r["PROCESS_ID"] for r in listed} == {pid}
    resumed = get(portal, clear=0, process_id=pid)
    assert resumed["process_id"] == pid
    assert [e["ID"] for e in resumed["events"]] == [e["ID"] for e in batch["events"]]
    call(
        portal,
        "event.offline.clear",
        {"process_id": pid, "id": [e["ID"] for e in resumed["events"]]},
    )
    assert call(portal, "event.offline.list").result == []


def test_same_entity_updated_during_processing_yields_a_second_record(portal: Portal) -> None:
    """An edit while the record is locked lands in a new record, drained after the
    first batch is cleared, carrying the newer user."""
    company = portal.crm.add(None, "company", {"TITLE": "A"})
    get(portal)  # drain the ADD
    portal.crm.update(None, "company", company, {"TITLE": "B"})
    batch = get(portal, clear=0)
    portal.clock.advance(5)
    portal.crm.update(None, "company", company, {"TITLE": "C"}, user_id=2)
    call(portal, "event.offline.clear", {"process_id": batch["process_id"]})
    second = get(portal, clear=0)
    assert entity_ids(second["events"]) == [company]
    assert second["events"][0]["ID"] != batch["events"][0]["ID"]
    assert second["events"][0]["MESSAGE_ID"] == batch["events"][0]["MESSAGE_ID"]
    assert second["events"][0]["EVENT_ADDITIONAL"] == {"user_id": "2"}
    assert portal.crm.get("company", company)["TITLE"] == "C"


def test_echo_suppression_with_and_without_auth_connector(portal: Portal) -> None:
    """The connector's own writes with auth_connector queue nothing; the same writes
    without it echo back into its partition; a UI edit always arrives."""
    own = app_ctx(CONNECTOR)
    company = call(portal, "crm.company.add", {"fields": {"TITLE": "ERP"}}, ctx=own).result
    call(portal, "crm.company.update", {"id": company, "fields": {"TITLE": "ERP2"}}, ctx=own)
    assert portal.events.finish_request(own) == {}
    assert get(portal)["events"] == []
    forgot = app_ctx("")
    call(portal, "crm.company.update", {"id": company, "fields": {"TITLE": "ERP3"}}, ctx=forgot)
    assert portal.events.finish_request(forgot) == {APP: {CONNECTOR: 1}}
    assert [e["EVENT_NAME"] for e in get(portal)["events"]] == ["ONCRMCOMPANYUPDATE"]
    portal.crm.update(None, "company", company, {"TITLE": "UI"}, user_id=2)
    assert [e["EVENT_ADDITIONAL"] for e in get(portal)["events"]] == [{"user_id": "2"}]


def test_echoes_return_on_a_plan_without_auth_connector(portal: Portal) -> None:
    """Below Pro the key is ignored, so the connector's own writes come back (A1): the
    self-test the connector runs at start-up would see this marker record."""
    portal.with_plan("standard")
    call(portal, "event.bind", {"event": "ONCRMCOMPANYADD", "event_type": "offline"})
    own = app_ctx(CONNECTOR)
    marker = call(portal, "crm.company.add", {"fields": {"TITLE": "marker"}}, ctx=own).result
    # The app's own request has connector "" now, equal to the '' binding: suppressed...
    assert get(portal)["events"] == []
    # ...but the OneC binding made on Pro still exists and receives the echo.
    rows = [r for r in portal.queue.records() if r.connector_id == CONNECTOR]
    assert [r.event_data for r in rows] == [{"FIELDS": {"ID": marker}}]


def test_error_flagging_hides_later_edits_until_release(portal: Portal) -> None:
    """Flag a conflict, edit the entity twice more (hidden, merged into the errored
    record), then release with error=1 filtered by MESSAGE_ID; the flow resumes."""
    company = portal.crm.add(None, "company", {"TITLE": "A"})
    get(portal)
    portal.crm.update(None, "company", company, {"TITLE": "B"})
    batch = get(portal, clear=0)
    mid = batch["events"][0]["MESSAGE_ID"]
    call(portal, "event.offline.error", {"process_id": batch["process_id"], "message_id": [mid]})
    call(portal, "event.offline.clear", {"process_id": batch["process_id"]})
    for title in ("C", "D"):
        portal.clock.advance(60)
        portal.crm.update(None, "company", company, {"TITLE": title}, user_id=2)
    assert get(portal, clear=0)["events"] == []
    errored = call(portal, "event.offline.list", {"filter": {"=ERROR": 1}}).result
    assert len(errored) == 1 and errored[0]["ID"] == batch["events"][0]["ID"]
    assert errored[0]["TIMESTAMP_X"] == portal.clock.iso()
    released = get(portal, error=1, filter={"=MESSAGE_ID": mid})
    assert released["process_id"] is None and entity_ids(released["events"]) == [company]
    assert call(portal, "event.offline.list").result == []
    portal.crm.update(None, "company", company, {"TITLE": "E"})
    assert entity_ids(get(portal)["events"]) == [company]


def test_add_then_delete_before_a_drain(portal: Portal) -> None:
    """Two records (ADD and DELETE) arrive; re-reading the entity answers Not found."""
    contact = portal.crm.add(None, "contact", {"NAME": "Ann"})
    portal.crm.delete(None, "contact", contact)
    events = get(portal, clear=0)["events"]
    # the same second: the order between them is not the order of the changes
    assert sorted((e["EVENT_NAME"], e["EVENT_DATA"]["FIELDS"]["ID"]) for e in events) == [
        ("ONCRMCONTACTADD", contact),
        ("ONCRMCONTACTDELETE", contact),
    ]
    with pytest.raises(RestError) as info:
        call(portal, "crm.contact.get", {"id": contact})
    assert info.value.body() == {"error": "", "error_description": "Not found"}


def test_parallel_getters_get_disjoint_sets(portal: Portal) -> None:
    """Eight threads draining with clear=0 never share a record, and together they get
    every record exactly once."""
    for n in range(300):
        portal.crm.add(None, "company", {"TITLE": f"C{n}"})
    taken: list[list[str]] = [[] for _ in range(8)]

    def worker(slot: int) -> None:
        while True:
            events = get(portal, clear=0, limit=7)["events"]
            if not events:
                return
            taken[slot].extend(e["ID"] for e in events)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [record_id for part in taken for record_id in part]
    assert len(every) == len(set(every)) == 300


# ---- property test ----------------------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("fire"), st.integers(0, 4)),
    st.tuples(st.just("get"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("reread"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("clear"), st.integers(0, 9), st.integers(0, 15)),
    st.tuples(st.just("error"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(st.just("release"), st.booleans()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=40))
def test_queue_invariants_over_random_sequences(ops: list[tuple[Any, ...]]) -> None:
    """No record is ever handed to a new process unless it was free; there is at most
    one free record per MESSAGE_ID; and every message fired is eventually delivered
    after its last firing, unless it ends up held as an error."""
    portal = Portal()
    portal.events.bind(APP, "ONCRMLEADUPDATE", connector_id=CONNECTOR)
    ui = CallContext(client_id=None, user_id=1, is_admin=True)
    pids: list[str] = []
    last_fire: dict[str, int] = {}
    last_delivery: dict[str, int] = {}

    def deliver(step: int, events: list[dict[str, Any]]) -> None:
        for event in events:
            last_delivery[event["MESSAGE_ID"]] = step

    for step, op in enumerate(ops):
        before = {r.id: r.process_id for r in portal.queue.records()}
        if op[0] == "fire":
            data = {"FIELDS": {"ID": op[1]}}
            portal.events.fire(ui, "ONCRMLEADUPDATE", data)
            last_fire[message_id_for("ONCRMLEADUPDATE", data)] = step
        elif op[0] == "get":
            result = get(portal, limit=op[1], clear=0 if op[2] else 1)
            for event in result["events"]:
                assert before[int(event["ID"])] == "", "a locked record was handed out again"
            if result["process_id"]:
                pids.append(result["process_id"])
            deliver(step, result["events"])
        elif op[0] == "release":
            result = get(portal, error=1, clear=0 if op[1] else 1)
            if result["process_id"]:
                pids.append(result["process_id"])
            deliver(step, result["events"])
        elif pids:
            pid = pids[op[1] % len(pids)]
            held = [r for r in portal.queue.records() if r.process_id == pid]
            if op[0] == "reread":
                for error in (0, 1):
                    result = get(portal, process_id=pid, error=error, clear=1 if op[2] else 0)
                    assert all(before[int(e["ID"])] == pid for e in result["events"])
            elif op[0] == "clear":
                chosen = [str(r.id) for n, r in enumerate(held) if op[2] >> n & 1]
                call(portal, "event.offline.clear", {"process_id": pid, "id": chosen})
            elif held:
                mid = held[op[2] % len(held)].message_id
                call(portal, "event.offline.error", {"process_id": pid, "message_id": [mid]})
        free = [r.message_id for r in portal.queue.records() if r.process_id == ""]
        assert len(free) == len(set(free)), "two free records share a MESSAGE_ID"

    # Finish every live process, then drain the rest.
    end = len(ops)
    for pid in pids:
        call(portal, "event.offline.clear", {"process_id": pid})
    while events := get(portal)["events"]:
        deliver(end, events)
    errored = {r.message_id for r in portal.queue.records()}
    assert all(r.error == 1 and r.process_id == "" for r in portal.queue.records())
    for mid, fired_at in last_fire.items():
        assert last_delivery.get(mid, -1) > fired_at or mid in errored, mid


def test_records_changed_in_the_same_second_do_not_come_in_change_order() -> None:
    """TIMESTAMP_X orders the queue; ties (one second) are the database's to order, and
    here they come newest first, so a consumer that takes delivery order for change
    order fails in tests, not in production. A later second still comes later."""
    portal = bound_portal(Portal(clock=Clock(source=lambda: 1_764_590_400.25)))  # one second
    first = portal.crm.add(None, "contact", {"NAME": "Ann"})
    second = portal.crm.add(None, "contact", {"NAME": "Bob"})
    portal.clock.advance(2)
    third = portal.crm.add(None, "contact", {"NAME": "Cid"})
    events = get(portal, clear=0)["events"]
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in events] == [second, first, third]
