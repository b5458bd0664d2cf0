"""The control surface: the Python API on Emulator and its /_emulator/ HTTP twin."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from connector.emulator.app import Emulator
from connector.emulator.params import parse_query


async def rest(http: httpx.AsyncClient, token: str, method: str, **params: Any) -> Any:
    return (await http.post(f"/rest/{method}", json={"auth": token, **params})).json()


async def test_install_app_over_http_returns_a_working_pair(http: httpx.AsyncClient) -> None:
    """POST /_emulator/apps installs an app and returns client credentials and tokens;
    client_endpoint is the base URL the control call came in on."""
    r = await http.post("/_emulator/apps", json={"client_id": "local.ctl.1", "scopes": "crm,pull"})
    app = r.json()
    assert app["client_id"] == "local.ctl.1"
    assert app["client_endpoint"] == "https://emulator.bitrix24.test/rest/"
    assert app["scope"] == "crm,pull"
    assert len(app["application_token"]) == 32
    assert (await rest(http, app["access_token"], "profile"))["result"]["ID"] == "1"
    more = (await http.post("/_emulator/tokens", json={"client_id": "local.ctl.1"})).json()
    assert more["refresh_token"] != app["refresh_token"]


async def test_expire_and_ttl_over_http(http: httpx.AsyncClient) -> None:
    """/tokens/expire makes the live access token answer expired_token; /tokens/ttl sets
    the lifetime of tokens issued afterwards."""
    app = (await http.post("/_emulator/apps", json={})).json()
    assert (await http.post("/_emulator/tokens/expire", json={})).json()["expired"] == 1
    assert (await rest(http, app["access_token"], "profile"))["error"] == "expired_token"
    await http.post("/_emulator/tokens/ttl", json={"seconds": 60})
    fresh = (await http.post("/_emulator/tokens", json={"client_id": app["client_id"]})).json()
    assert fresh["expires_in"] == 60


async def test_seed_is_deterministic() -> None:
    """The same seed gives the same data on two emulators; another seed differs."""
    first, second = Emulator(), Emulator()
    a = first.seed_crm(companies=5, contacts=3, deals=2, seed=42)
    b = second.seed_crm(companies=5, contacts=3, deals=2, seed=42)
    assert a == b
    rows_a = [first.default_portal.crm.get("company", i) for i in a["company"]]
    rows_b = [second.default_portal.crm.get("company", i) for i in b["company"]]
    assert [r["TITLE"] for r in rows_a] == [r["TITLE"] for r in rows_b]
    third = Emulator()
    c = third.seed_crm(companies=5, seed=43)
    rows_c = [third.default_portal.crm.get("company", i) for i in c["company"]]
    assert [r["TITLE"] for r in rows_c] != [r["TITLE"] for r in rows_a]


async def test_seed_over_http(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """POST /_emulator/seed creates the requested counts, listed by crm.*.list totals."""
    made = (await http.post("/_emulator/seed", json={"companies": 4, "leads": 2, "seed": 1})).json()
    assert len(made["company"]) == 4 and len(made["lead"]) == 2
    body = await rest(http, app_creds["access_token"], "crm.company.list")
    assert body["total"] == 4


async def test_ui_user_actions_queue_events_and_push(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """A UI user's add/update/delete fire events: the app's offline queue gets records
    (EVENT_ADDITIONAL.user_id = that user) and its channel an event_offline push."""
    token = app_creds["access_token"]
    for event in ("ONCRMCOMPANYADD", "ONCRMCOMPANYUPDATE", "ONCRMCOMPANYDELETE"):
        bound = await rest(
            http, token, "event.bind", event=event, event_type="offline", auth_connector="erp"
        )
        assert bound.get("result") is True, bound
    new_id = (
        await http.post(
            "/_emulator/ui/add",
            json={"entity": "company", "fields": {"TITLE": "From UI"}, "user_id": 2},
        )
    ).json()["id"]
    await http.post(
        "/_emulator/ui/update",
        json={"entity": "crm.company", "id": new_id, "fields": {"TITLE": "Changed"}, "user_id": 2},
    )
    other = emulator.ui_add("company", {"TITLE": "Gone soon"})
    emulator.ui_delete("company", other)
    queue = (await http.get("/_emulator/queue")).json()
    names = sorted(row["EVENT_NAME"] for row in queue)
    assert names == [
        "ONCRMCOMPANYADD",
        "ONCRMCOMPANYADD",
        "ONCRMCOMPANYDELETE",
        "ONCRMCOMPANYUPDATE",
    ]
    assert {row["CONNECTOR_ID"] for row in queue} == {"erp"}
    by_user = {
        row["EVENT_ADDITIONAL"]["user_id"]
        for row in queue
        if row["EVENT_DATA"]["FIELDS"]["ID"] == new_id
    }
    assert by_user == {"2"}
    pushes = emulator.default_portal.pull.published(app_creds["client_id"], "event_offline")
    assert len(pushes) == 4


async def test_plan_limits_and_faults_over_http(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """/plan, /limits and /faults change the running portal; /faults clear resets."""
    token = app_creds["access_token"]
    assert (await http.post("/_emulator/plan", json={"plan": "enterprise"})).json() == {
        "plan": "enterprise"
    }
    snap = (
        await http.post("/_emulator/limits", json={"burst": 1, "rate": 0.001, "reset": True})
    ).json()
    assert (snap["burst"], snap["rate"]) == (1, 0.001)
    assert "result" in await rest(http, token, "server.time")
    assert (await rest(http, token, "server.time"))["error"] == "QUERY_LIMIT_EXCEEDED"
    await http.post("/_emulator/limits", json={"enabled": False})
    await http.post("/_emulator/faults", json={"overload": True})
    assert (await rest(http, token, "server.time"))["error"] == "OVERLOAD_LIMIT"
    await http.post("/_emulator/faults", json={"clear": True, "fail_next": 1})
    assert (await rest(http, token, "server.time"))["error"] == "INTERNAL_SERVER_ERROR"
    assert "result" in await rest(http, token, "server.time")


async def test_request_log_and_clock_over_http(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """/log lists entries (filter by method, since); DELETE clears; /clock/advance moves
    the test clock so tokens expire."""
    await rest(http, app_creds["access_token"], "server.time")
    await rest(http, app_creds["access_token"], "profile")
    entries = (await http.get("/_emulator/log", params={"method": "profile"})).json()
    assert [e["method"] for e in entries] == ["profile"]
    assert entries[0]["client_id"] == app_creds["client_id"]
    since = (await http.get("/_emulator/log", params={"since": 1})).json()
    assert [e["seq"] for e in since] == [2]
    await http.delete("/_emulator/log")
    assert (await http.get("/_emulator/log")).json() == []
    before = emulator.clock.now()
    now = (await http.post("/_emulator/clock/advance", json={"seconds": 3601})).json()["now"]
    assert now >= before + 3601
    assert (await rest(http, app_creds["access_token"], "profile"))["error"] == "expired_token"


async def test_pull_commands_are_delegated(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """/pull/{command} reaches the portal's Push&Pull hub."""
    token = app_creds["access_token"]
    assert "result" in await rest(http, token, "pull.application.config.get")
    r = await http.post(
        "/_emulator/pull/server_restart", json={"client_id": app_creds["client_id"]}
    )
    assert r.status_code == 200
    sent = emulator.default_portal.pull.published(app_creds["client_id"], "server_restart")
    assert len(sent) == 1
    r = await http.post("/_emulator/pull/refuse_websocket", json={"status": 403})
    assert r.status_code == 200
    assert emulator.default_portal.pull.websocket_refusal == (True, 403)
    r = await http.post("/_emulator/pull/nonsense", json={})
    assert r.status_code == 400


async def test_state_and_errors(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """/state shows portals and apps without secrets; bad control input is a 400."""
    state = (await http.get("/_emulator/state")).json()
    assert state["portals"][0]["member_id"] == emulator.default_portal.member_id
    assert [a["client_id"] for a in state["apps"]] == [app_creds["client_id"]]
    assert app_creds["client_secret"] not in repr(state)
    r = await http.post("/_emulator/ui/add", json={"entity": "spaceship", "fields": {}})
    assert r.status_code == 400
    r = await http.post("/_emulator/tokens", json={"client_id": "local.never"})
    assert r.status_code == 400


def test_install_posts_onappinstall_with_the_refresh_token(emulator: Emulator) -> None:
    """With an install callback the portal posts ONAPPINSTALL form-encoded: event, data,
    ts and auth[...] with refresh_token, application_token and the portal domain."""
    sent: list[tuple[str, str]] = []
    emulator.form_sender = lambda url, body: sent.append((url, body))
    app = emulator.install_app(install_callback="https://erp.example.test/install")
    [(url, body)] = sent
    assert url == "https://erp.example.test/install"
    form = parse_query(body)
    assert form["event"] == "ONAPPINSTALL"
    assert form["data"]["VERSION"] == "1"
    auth = form["auth"]
    assert auth["refresh_token"] == app["refresh_token"]
    assert auth["access_token"] == app["access_token"]
    assert auth["application_token"] == app["application_token"]
    assert auth["member_id"] == emulator.default_portal.member_id
    assert auth["domain"] == emulator.default_portal.domain
    assert auth["expires_in"] == "3600"


def test_onappinstall_reaches_a_real_receiver(emulator: Emulator) -> None:
    """Without a custom sender the POST goes over HTTP to the callback URL."""
    received: list[bytes] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        emulator.install_app(install_callback=f"http://127.0.0.1:{port}/install")
        assert arrived.wait(10)
    finally:
        server.shutdown()
        server.server_close()
    assert parse_query(received[0])["event"] == "ONAPPINSTALL"


async def test_users_over_http_and_non_admin_tokens(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """POST /_emulator/users adds a user; a token for a non-admin gets 403 ACCESS_DENIED
    from event.offline.get while an admin's token works."""
    r = await http.post("/_emulator/users", json={"id": 7, "name": "Clerk"})
    assert r.json() == {"id": 7, "name": "Clerk", "is_admin": False}
    app = emulator.install_app(scopes=("crm",))
    clerk = emulator.issue_tokens(app["client_id"], user_id=7)
    body = await rest(http, clerk["access_token"], "event.offline.get")
    assert body["error"] == "ACCESS_DENIED"
    assert "result" in await rest(http, app["access_token"], "event.offline.get")


async def test_online_event_handlers_receive_form_posts(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """With delivery switched on, an online binding's handler gets event, data, ts and
    auth[...] (a working access token, application_token, no refresh token); an
    onOfflineEvent handler's auth also carries a refresh token."""
    sent: list[tuple[str, str]] = []
    emulator.form_sender = lambda url, body: sent.append((url, body))
    assert (await http.post("/_emulator/events/deliver", json={})).status_code == 200
    token = app_creds["access_token"]
    for event, handler in (
        ("ONCRMCOMPANYUPDATE", "https://erp.example.test/hook"),
        ("ONOFFLINEEVENT", "https://erp.example.test/offline"),
    ):
        bound = await rest(http, token, "event.bind", event=event, handler=handler)
        assert bound.get("result") is True, bound
    await rest(http, token, "event.bind", event="ONCRMCOMPANYUPDATE", event_type="offline")
    company = emulator.ui_add("company", {"TITLE": "Hooked"})
    emulator.ui_update("company", company, {"TITLE": "Hooked 2"}, user_id=2)
    by_url = {url: parse_query(body) for url, body in sent}
    update = by_url["https://erp.example.test/hook"]
    assert update["event"] == "ONCRMCOMPANYUPDATE"
    assert update["data"] == {"FIELDS": {"ID": str(company)}}
    assert update["auth"]["application_token"] == app_creds["application_token"]
    assert update["auth"]["domain"] == emulator.default_portal.domain
    assert "refresh_token" not in update["auth"]
    assert (await rest(http, update["auth"]["access_token"], "profile"))["result"]["ID"] == "2"
    offline = by_url["https://erp.example.test/offline"]
    assert offline["event"] == "ONOFFLINEEVENT"
    assert offline["auth"]["refresh_token"]


async def test_the_request_log_keeps_only_the_newest_entries() -> None:
    """A long-running emulator keeps at most ``log_limit`` log entries; sequence numbers
    keep counting so ``since`` filters stay right."""
    small = Emulator(log_limit=3)
    creds = small.install_app(scopes=("crm",))
    async with small.client("https://emulator.bitrix24.test") as client:
        for _ in range(5):
            await client.get("/rest/server.time", params={"auth": creds["access_token"]})
    assert [e.seq for e in small.log] == [3, 4, 5]
    assert [e.seq for e in small.requests(since=4)] == [5]
