"""The REST surface: transports, envelope, errors, auth extraction, scopes, the request
log, several portals, and the end-of-request queue push."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from connector.emulator.app import Emulator
from connector.emulator.context import CallContext
from connector.emulator.params import as_list, build_query
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult
from tests.emulator.conftest import BASE, echo


def paged(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    return MethodResult([{"ID": "1"}], total=120, next=50)


def broken(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    raise ZeroDivisionError("boom")


def firing(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    for entity_id in as_list(params.get("ids")):
        portal.events.fire(ctx, "ONCRMCOMPANYADD", {"FIELDS": {"ID": int(entity_id)}})
    return MethodResult(True)


async def test_get_form_and_json_posts_reach_the_method_alike(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """GET query, form POST and JSON POST; with and without ``.json``; the query string
    and the body merge with the body winning."""
    method("test.echo", echo)
    token = app_creds["access_token"]
    g = await http.get(f"/rest/test.echo.json?auth={token}&fields[TITLE]=A&id[]=1")
    f = await http.post(
        "/rest/test.echo",
        content=build_query({"auth": token, "fields": {"TITLE": "A"}, "id": ["1"]}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    j = await http.post(
        f"/rest/test.echo.json?auth={token}&fields[TITLE]=old",
        json={"fields": {"TITLE": "A"}, "id": [1]},
    )
    assert g.json()["result"]["params"] == {"fields": {"TITLE": "A"}, "id": {"0": "1"}}
    assert f.json()["result"]["params"] == {"fields": {"TITLE": "A"}, "id": {"0": "1"}}
    assert j.json()["result"]["params"] == {"fields": {"TITLE": "A"}, "id": [1]}


async def test_access_token_parameter_and_auth_connector_are_taken_out(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """``access_token`` works like ``auth``; ``auth_connector`` goes to the context, not
    into the method parameters."""
    method("test.echo", echo)
    r = await http.get(
        "/rest/test.echo",
        params={"access_token": app_creds["access_token"], "auth_connector": "erp", "x": "1"},
    )
    result = r.json()["result"]
    assert result["params"] == {"x": "1"}
    assert result["auth_connector"] == "erp"
    assert result["client_id"] == app_creds["client_id"]


async def test_list_envelope_has_total_and_next(
    app_creds: dict[str, Any], http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """A list answer is {result, next, total, time}."""
    method("test.paged", paged)
    body = (await http.get("/rest/test.paged", params={"auth": app_creds["access_token"]})).json()
    assert set(body) == {"result", "next", "total", "time"}
    assert (body["total"], body["next"]) == (120, 50)


async def test_unknown_method_is_404(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """ERROR_METHOD_NOT_FOUND with HTTP 404."""
    r = await http.get("/rest/crm.nothing.here", params={"auth": app_creds["access_token"]})
    assert r.status_code == 404
    assert r.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}


async def test_scope_is_enforced(
    emulator: Emulator, http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """A crm-scoped method refuses an app without the crm scope (403 insufficient_scope)."""
    method("test.crmonly", echo, scope="crm")
    without = emulator.install_app(scopes=("user",))
    with_crm = emulator.install_app(scopes=("crm",))
    r = await http.get("/rest/test.crmonly", params={"auth": without["access_token"]})
    assert (r.status_code, r.json()["error"]) == (403, "insufficient_scope")
    r = await http.get("/rest/test.crmonly", params={"auth": with_crm["access_token"]})
    assert r.status_code == 200
    r = await http.get("/rest/crm.company.list", params={"auth": without["access_token"]})
    assert (r.status_code, r.json()["error"]) == (403, "insufficient_scope")
    r = await http.get("/rest/crm.company.list", params={"auth": with_crm["access_token"]})
    assert r.json()["result"] == []


async def test_handler_crash_is_a_500_and_is_recorded(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    method: Callable[..., None],
) -> None:
    """An exception in a handler answers 500 INTERNAL_SERVER_ERROR and is noted."""
    method("test.broken", broken)
    r = await http.get("/rest/test.broken", params={"auth": app_creds["access_token"]})
    assert (r.status_code, r.json()["error"]) == (500, "INTERNAL_SERVER_ERROR")
    assert emulator.internal_errors and "ZeroDivisionError" in emulator.internal_errors[0]


async def test_bad_json_body_is_a_400(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """A body that says JSON but is not parses to a 400 error, not a crash."""
    r = await http.post(
        "/rest/profile", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_request_log_records_who_called_what(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """Each request logs portal, method, params without auth, connector, app, status,
    error and whether the limiter accepted it."""
    await http.get(
        "/rest/profile",
        params={"auth": app_creds["access_token"], "auth_connector": "erp", "a": "1"},
    )
    await http.get("/rest/profile", params={"auth": "bad"})
    ok, bad = emulator.requests("profile")
    assert ok.params == {"a": "1"}
    assert (ok.auth_connector, ok.client_id, ok.status, ok.accepted) == (
        "erp",
        app_creds["client_id"],
        200,
        True,
    )
    assert ok.portal == emulator.default_portal.member_id
    assert (bad.status, bad.error, bad.accepted) == (401, "invalid_token", None)


async def test_token_selects_the_portal(
    emulator: Emulator, http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """Two portals behind one OAuth server: under host names each portal has its own
    client_endpoint and a token sent to the other portal's host is refused; on a
    loopback address the token alone selects the portal."""
    method("test.echo", echo)
    second = emulator.add_portal("second.bitrix24.test", plan="enterprise")
    a = emulator.install_app("local.shared.1", scopes=("crm",))
    b = emulator.install_app("local.shared.1", portal=second.member_id)
    assert a["client_secret"] == b["client_secret"]
    assert a["member_id"] != b["member_id"]
    assert a["client_endpoint"] == "https://emulator.bitrix24.test/rest/"
    assert b["client_endpoint"] == "https://second.bitrix24.test/rest/"
    ra = await http.get("/rest/test.echo", params={"auth": a["access_token"]})
    assert ra.json()["result"]["portal"] == emulator.default_portal.member_id
    async with emulator.client("https://second.bitrix24.test") as second_host:
        rb = await second_host.get("/rest/test.echo", params={"auth": b["access_token"]})
        assert rb.json()["result"]["portal"] == second.member_id
        r = await second_host.get("/rest/test.echo", params={"auth": a["access_token"]})
        assert (r.status_code, r.json()["error"]) == (401, "invalid_token")
    assert emulator.portal("second.bitrix24.test") is second
    async with emulator.client("http://127.0.0.1:8924") as loopback:
        rb = await loopback.get("/rest/test.echo", params={"auth": b["access_token"]})
        assert rb.json()["result"]["portal"] == second.member_id
        refreshed = await loopback.get(
            "/oauth/token/",
            params={
                "grant_type": "refresh_token",
                "client_id": b["client_id"],
                "client_secret": b["client_secret"],
                "refresh_token": b["refresh_token"],
            },
        )
        assert refreshed.json()["client_endpoint"] == "http://127.0.0.1:8924/rest/"


async def test_https_can_be_required(http: httpx.AsyncClient) -> None:
    """With require_https, a plain-http call answers 401 INVALID_REQUEST "Https required"."""
    emulator = Emulator(require_https=True)
    creds = emulator.install_app()
    async with emulator.client("http://emulator.bitrix24.test") as plain:
        r = await plain.get("/rest/profile", params={"auth": creds["access_token"]})
    assert r.json() == {"error": "INVALID_REQUEST", "error_description": "Https required"}
    async with emulator.client(BASE) as secure:
        assert (
            await secure.get("/rest/profile", params={"auth": creds["access_token"]})
        ).status_code == 200


async def test_firings_are_queued_and_pushed_once_per_app_per_request(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    method: Callable[..., None],
) -> None:
    """A request that fires two events for another app's offline binding ends with one
    event_offline push to that app, count 2, on its partition's connector."""
    method("test.fire", firing)
    portal = emulator.default_portal
    listener = emulator.install_app(scopes=("crm", "pull"))
    portal.events.bind(listener["client_id"], "ONCRMCOMPANYADD", connector_id="erp")
    await http.post("/rest/test.fire", json={"auth": app_creds["access_token"], "ids": [1, 2]})
    pushes = portal.pull.published(listener["client_id"], "event_offline")
    assert len(pushes) == 1
    assert pushes[0].params == [{"connector_id": "erp", "count": 2}]
    assert len(portal.queue.records(listener["client_id"])) == 2


async def test_own_writes_with_the_same_connector_are_not_queued(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    method: Callable[..., None],
) -> None:
    """Loop suppression end to end: the binding app writing with its own connector gets
    no record and no push; without the connector it does."""
    method("test.fire", firing)
    portal = emulator.default_portal
    portal.events.bind(app_creds["client_id"], "ONCRMCOMPANYADD", connector_id="erp")
    await http.post(
        "/rest/test.fire",
        json={"auth": app_creds["access_token"], "auth_connector": "erp", "ids": [1]},
    )
    assert portal.pull.published(app_creds["client_id"], "event_offline") == []
    await http.post("/rest/test.fire", json={"auth": app_creds["access_token"], "ids": [1]})
    assert len(portal.pull.published(app_creds["client_id"], "event_offline")) == 1


async def test_batch_firings_under_another_connector_are_one_push(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    method: Callable[..., None],
) -> None:
    """Sub-commands firing under different connectors still end in one push per app."""
    method("test.fire", firing)
    portal = emulator.default_portal
    portal.events.bind(app_creds["client_id"], "ONCRMCOMPANYADD", connector_id="erp")
    cmd = {"a": "test.fire?ids[]=1", "b": "test.fire?ids[]=2&auth_connector=other"}
    await http.post(
        "/rest/batch", json={"auth": app_creds["access_token"], "auth_connector": "erp", "cmd": cmd}
    )
    pushes = portal.pull.published(app_creds["client_id"], "event_offline")
    assert [p.params for p in pushes] == [[{"connector_id": "erp", "count": 1}]]
