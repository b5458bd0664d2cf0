"""Digest §11.1 checklist items that no other emulator test proved (see
docs/emulator-checklist.md): string range filters on the queue, ``methods`` discovery,
the webhook ban on every ``event.*`` method, per-installation application tokens, the
late (delayed, asynchronous) form POSTs of ONAPPINSTALL and online events, every CRM
method of every entity over HTTP, and ``onOfflineEvent`` throttling end to end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connector.emulator import control
from connector.emulator.app import Emulator
from connector.emulator.context import CallContext
from connector.emulator.params import parse_query
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from tests.emulator.pull_harness import APP as PULL_APP
from tests.emulator.pull_harness import messages_of, serve

APP = "local.app1"
FORM = "application/x-www-form-urlencoded"


def app_ctx(connector: str = "OneC") -> CallContext:
    return CallContext(client_id=APP, user_id=1, is_admin=True, auth_connector=connector)


def call(
    portal: Portal, ctx: CallContext, method: str, params: dict[str, Any] | None = None
) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    return entry[0](portal, ctx, dict(params or {}))


async def rest(http: httpx.AsyncClient, token: str, method: str, **params: Any) -> Any:
    return (await http.post(f"/rest/{method}", json={"auth": token, **params})).json()


@dataclass
class Receiver:
    """A loopback HTTP server standing in for an app's handler."""

    url: str
    posts: list[tuple[str, bytes]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


@contextmanager
def receiver(*, hold: bool = False) -> Iterator[Receiver]:
    """Collect POSTs (content type, body). With ``hold`` each POST is answered only once
    the test sets ``release`` (at most 10 s later)."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.posts.append((self.headers.get("Content-Type", ""), body))
            state.entered.set()
            if hold:
                state.release.wait(10)
            self.send_response(200)
            self.end_headers()
            state.done.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


# ---- Offline queue: string range filters (the ">PROCESS_ID" open point) --------------


@pytest.fixture
def queue_portal() -> Portal:
    """Three lead records in one partition: one locked by a process, two free."""
    portal = Portal()
    portal.events.bind(APP, "ONCRMLEADADD", connector_id="OneC")
    for n in range(3):
        portal.crm.add(None, "lead", {"TITLE": f"L{n}"})
    return portal


def test_list_greater_than_empty_process_id_returns_every_locked_record(
    queue_portal: Portal,
) -> None:
    """``filter[>PROCESS_ID]=`` is ``PROCESS_ID > ''`` in CSQLWhere::addStringFilter (no
    empty-value special case for ``>``), so it lists exactly the locked records; ``<''``
    lists nothing and ``>=''`` lists everything."""
    got = call(queue_portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 1}).result
    pid = got["process_id"]

    def listed(flt: dict[str, Any]) -> list[str]:
        rows = call(queue_portal, app_ctx(), "event.offline.list", {"filter": flt}).result
        return [r["PROCESS_ID"] for r in rows]

    assert listed({">PROCESS_ID": ""}) == [pid]
    assert listed({"<PROCESS_ID": ""}) == []
    assert sorted(listed({">=PROCESS_ID": ""})) == sorted([pid, "", ""])
    assert sorted(listed({"<=PROCESS_ID": ""})) == ["", ""]
    assert sorted(listed({"<PROCESS_ID": "zzzz"})) == sorted([pid, "", ""])


def test_substring_filter_with_an_empty_value_means_empty(queue_portal: Portal) -> None:
    """``%PROCESS_ID: ""`` is ``_Empty(PROCESS_ID)`` in the rest module's SQL builder: the
    free records, like ``=PROCESS_ID: ""`` (not "nothing")."""
    call(queue_portal, app_ctx(), "event.offline.get", {"clear": 0, "limit": 2})
    for op in ("%", "="):
        flt = {f"{op}PROCESS_ID": ""}
        rows = call(queue_portal, app_ctx(), "event.offline.list", {"filter": flt}).result
        assert [r["PROCESS_ID"] for r in rows] == [""], op


async def test_greater_than_empty_process_id_over_a_form_post(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """The operator's recovery query as a form POST (``filter[>PROCESS_ID]=`` arrives as
    an empty string) finds the records a crashed worker still holds."""
    token = app_creds["access_token"]
    bound = await rest(http, token, "event.bind", event="ONCRMCOMPANYADD", event_type="offline")
    assert bound["result"] is True
    for n in range(3):
        emulator.ui_add("company", {"TITLE": f"C{n}"})
    pid = (await rest(http, token, "event.offline.get", clear=0, limit=2))["result"]["process_id"]
    r = await http.post("/rest/event.offline.list", data={"auth": token, "filter[>PROCESS_ID]": ""})
    assert [row["PROCESS_ID"] for row in r.json()["result"]] == [pid, pid]
    assert r.json()["total"] == 2


# ---- REST surface: discovery and the webhook ban ----------------------------------------


async def test_methods_lists_the_callers_scopes_plus_global_ones(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """``methods`` answers the method names of the caller's scopes and the scope-less
    ones; ``scope=crm`` narrows to one scope; ``full=true`` lists all; ``method.get``
    tells existing from available."""
    crm_only = emulator.install_app(scopes=("crm",))["access_token"]
    names = (await rest(http, crm_only, "methods"))["result"]
    assert {"crm.company.add", "crm.deal.list", "batch", "event.offline.get"} <= set(names)
    assert "pull.application.config.get" not in names
    crm = (await rest(http, crm_only, "methods", scope="crm"))["result"]
    assert "crm.lead.fields" in crm and "batch" not in crm
    assert all(name.startswith("crm.") for name in crm)
    full = (await rest(http, crm_only, "methods", full="true"))["result"]
    assert "pull.application.config.get" in full
    probe = await rest(http, crm_only, "method.get", name="pull.application.config.get")
    assert probe["result"] == {"isExisting": True, "isAvailable": False}
    missing = (await rest(http, crm_only, "method.get", name="crm.nothing.add"))["result"]
    assert missing == {"isExisting": False, "isAvailable": False}


async def test_events_discovery_over_http(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """``events`` over REST lists every CRM entity event for a crm-scoped app."""
    names = set((await rest(http, app_creds["access_token"], "events"))["result"])
    for entity in ("LEAD", "CONTACT", "COMPANY", "DEAL"):
        assert {f"ONCRM{entity}ADD", f"ONCRM{entity}UPDATE", f"ONCRM{entity}DELETE"} <= names


async def test_every_event_method_refuses_a_webhook(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """Every registered ``event.*`` method (bind, unbind, get and all of event.offline.*)
    answers 403 WRONG_AUTH_TYPE through an admin's incoming webhook (L2249)."""
    hook = emulator.add_webhook(1)
    event_methods = [n for n in registry.names() if n.startswith("event.")]
    assert {"event.offline.clear", "event.offline.error"} <= set(event_methods)
    for name in event_methods:
        r = await http.post(f"/rest/1/{hook.secret}/{name}", data={"process_id": "x"})
        assert (r.status_code, r.json()["error"]) == (403, "WRONG_AUTH_TYPE"), name


@pytest.mark.parametrize(("plan", "burst", "rate"), [("pro", 50, 2), ("enterprise", 250, 5)])
async def test_plan_bucket_sizes_are_enforced(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    plan: str,
    burst: int,
    rate: int,
) -> None:
    """With the clock held still, a Pro portal lets exactly 50 requests through and an
    Enterprise one 250; the next answers 503 QUERY_LIMIT_EXCEEDED. One second later
    the bucket has drained by the plan's rate (2 or 5 requests)."""
    emulator.set_plan(plan)
    frozen = emulator.clock.now()
    monkeypatch.setattr(emulator.clock, "now", lambda: frozen)
    token = app_creds["access_token"]
    codes = [
        (await http.get("/rest/server.time", params={"auth": token})).status_code
        for _ in range(burst + 1)
    ]
    assert codes == [200] * burst + [503]
    monkeypatch.setattr(emulator.clock, "now", lambda: frozen + 1.0)
    codes = [
        (await http.get("/rest/server.time", params={"auth": token})).status_code
        for _ in range(rate + 1)
    ]
    assert codes == [200] * rate + [503]


# ---- Tenancy and apps --------------------------------------------------------------------


def test_application_token_is_per_installation() -> None:
    """One app installed on two portals gets a different ``application_token`` on each;
    a marketplace ``app.*`` client reports status F, a ``local.*`` one L."""
    emulator = Emulator()
    emulator.add_portal("second.bitrix24.test")
    first = emulator.install_app("app.vendor.1", scopes=("crm",))
    second = emulator.install_app("app.vendor.1", portal="second.bitrix24.test")
    assert first["client_secret"] == second["client_secret"]
    assert first["application_token"] != second["application_token"]
    assert first["member_id"] != second["member_id"]
    assert first["status"] == "F"
    assert emulator.install_app(scopes=("crm",))["status"] == "L"


def test_onappinstall_is_a_late_form_post_after_the_configured_delay(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """install_app returns at once; the ONAPPINSTALL POST waits ``delivery_delay`` in a
    background thread (L1807: handlers "can fire late") and then arrives form-encoded
    with the refresh token."""
    slept: list[float] = []
    sleeping, wake = threading.Event(), threading.Event()

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        sleeping.set()
        wake.wait(10)

    monkeypatch.setattr(control, "time", SimpleNamespace(sleep=fake_sleep))
    emulator.delivery_delay = 7.5
    with receiver() as hook:
        app = emulator.install_app(install_callback=hook.url)
        assert sleeping.wait(10)
        assert slept == [7.5] and hook.posts == []
        wake.set()
        assert hook.done.wait(10)
    [(content_type, body)] = hook.posts
    assert content_type == FORM
    form = parse_query(body.decode())
    assert form["event"] == "ONAPPINSTALL"
    assert form["auth"]["refresh_token"] == app["refresh_token"]


# ---- Events: online delivery is asynchronous -------------------------------------------------


async def test_online_delivery_does_not_hold_up_the_request(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """The handler POST goes out from a background thread: the UI write has returned
    while the handler is still busy with it; the POST is form-encoded."""
    token = app_creds["access_token"]
    emulator.deliver_online_events()
    with receiver(hold=True) as hook:
        bound = await rest(http, token, "event.bind", event="ONCRMLEADADD", handler=hook.url)
        assert bound["result"] is True
        lead = emulator.ui_add("lead", {"TITLE": "async"})
        assert hook.entered.wait(10)
        assert not hook.done.is_set()
        hook.release.set()
        assert hook.done.wait(10)
    [(content_type, body)] = hook.posts
    assert content_type == FORM
    form = parse_query(body.decode())
    assert (form["event"], form["data"]) == ("ONCRMLEADADD", {"FIELDS": {"ID": str(lead)}})
    assert form["auth"]["application_token"] == app_creds["application_token"]


async def test_online_delivery_waits_the_configured_delay(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``delivery_delay`` set, each handler POST sleeps that long before going out."""
    slept: list[float] = []
    monkeypatch.setattr(control, "time", SimpleNamespace(sleep=slept.append))
    emulator.delivery_delay = 2.0
    emulator.deliver_online_events()
    with receiver() as hook:
        await rest(
            http, app_creds["access_token"], "event.bind", event="ONCRMLEADADD", handler=hook.url
        )
        emulator.ui_add("lead", {"TITLE": "late"})
        assert hook.done.wait(10)
    assert slept == [2.0]
    assert len(hook.posts) == 1


async def test_on_offline_event_min_timeout_end_to_end(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """event.bind with form-encoded ``options[minTimeout]=30``: the first request that
    queues records notifies; a second one within 30 s does not; after the window (test
    clock) the next request of any kind sends the held notification. The payload
    carries a refresh token and no entity data."""
    token = app_creds["access_token"]
    sent: list[tuple[str, str]] = []
    emulator.form_sender = lambda url, body: sent.append((url, body))
    emulator.deliver_online_events()
    r = await http.post(
        "/rest/event.bind",
        data={
            "auth": token,
            "event": "onOfflineEvent",
            "handler": "https://erp.example.test/wake",
            "options[minTimeout]": "30",
        },
    )
    assert r.json()["result"] is True
    await rest(http, token, "event.bind", event="ONCRMCOMPANYADD", event_type="offline")
    emulator.ui_add("company", {"TITLE": "one"})
    emulator.ui_add("company", {"TITLE": "two"})
    assert len(sent) == 1
    emulator.advance(31)
    token = emulator.issue_tokens(app_creds["client_id"])["access_token"]
    assert "result" in await rest(http, token, "profile")
    assert len(sent) == 2
    for url, body in sent:
        form = parse_query(body)
        assert url == "https://erp.example.test/wake"
        assert form["event"] == "ONOFFLINEEVENT"
        assert form["auth"]["refresh_token"]
        assert "FIELDS" not in str(form.get("data", ""))


# ---- CRM: every method of every entity over HTTP ------------------------------------------


@pytest.mark.parametrize(
    ("entity", "fields"),
    [
        ("lead", {"TITLE": "Lead"}),
        ("contact", {"NAME": "Ann"}),
        ("company", {"TITLE": "Acme"}),
        ("deal", {"TITLE": "Deal"}),
    ],
)
async def test_every_crm_method_of_every_entity(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    entity: str,
    fields: dict[str, Any],
) -> None:
    """crm.<entity>.add/get/update/list/fields/delete answer through REST; the record
    is gone after delete (400 Not found)."""
    token = app_creds["access_token"]
    prefix = f"crm.{entity}"
    new_id = (await rest(http, token, f"{prefix}.add", fields=fields))["result"]
    assert isinstance(new_id, int)
    got = (await rest(http, token, f"{prefix}.get", id=new_id))["result"]
    assert got["ID"] == str(new_id)
    assert (await rest(http, token, f"{prefix}.update", id=new_id, fields={"COMMENTS": "x"}))[
        "result"
    ] is True
    assert (await rest(http, token, f"{prefix}.get", id=new_id))["result"]["COMMENTS"] == "x"
    listed = await rest(http, token, f"{prefix}.list", filter={"=ID": new_id})
    assert [row["ID"] for row in listed["result"]] == [str(new_id)] and listed["total"] == 1
    described = (await rest(http, token, f"{prefix}.fields"))["result"]
    assert "ID" in described and described["ID"]["isReadOnly"] is True
    assert (await rest(http, token, f"{prefix}.delete", id=new_id))["result"] is True
    r = await http.post(f"/rest/{prefix}.get", json={"auth": token, "id": new_id})
    assert r.status_code == 400 and r.json()["error_description"] == "Not found"


# ---- Push&Pull: resuming by tag/time on a version-2 server ---------------------------------


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [
        ("first", ["two", "three"]),
        ("before", ["one", "two", "three"]),
        ("after", []),
    ],
)
async def test_version_2_long_poll_resumes_by_tag_and_time(
    cursor: str, expected: list[str]
) -> None:
    """Servers ≤2 resume from the ``tag``/``time`` of the last message seen (§8.3): the
    first message's pair replays the two later ones; an unknown tag with a time before
    everything replays all; a time after everything replays nothing (304)."""
    with serve() as served:
        served.hub.set_version(2)
        served.hub.settings.hold_timeout = 0.3
        cfg = served.config()
        first = served.hub.publish(PULL_APP, "application", "one", {})
        for command in ("two", "three"):
            served.hub.publish(PULL_APP, "application", command, {})
        tag, when = {
            "first": (first.tag, first.created),
            "before": ("999", first.created - 60),
            "after": ("999", first.created + 60),
        }[cursor]
        query = {
            "CHANNEL_ID": cfg["channels"]["shared"]["id"],
            "clientId": cfg["server"]["clientId"],
            "tag": tag,
            "time": formatdate(when, usegmt=True),
        }
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{cfg['server']['long_polling_secure']}?{urlencode(query)}")
    if not expected:
        assert r.status_code == 304
        return
    assert r.status_code == 200 and r.text.startswith("#!NGINXNMS!#")
    assert [m["text"]["command"] for m in messages_of(r.text)] == expected
