"""The oauth.bitrix.info stand-in: codes, token chains, rotation and REST-side errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from connector.emulator.app import Emulator

TOKEN_FIELDS = {
    "access_token",
    "client_endpoint",
    "domain",
    "expires_in",
    "member_id",
    "refresh_token",
    "scope",
    "server_endpoint",
    "status",
}


async def refresh(
    http: httpx.AsyncClient, creds: dict[str, Any], token: str, *, post: bool = False
) -> httpx.Response:
    params = {
        "grant_type": "refresh_token",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "refresh_token": token,
    }
    if post:
        return await http.post("/oauth/token/", data=params)
    return await http.get("/oauth/token/", params=params)


async def call(
    http: httpx.AsyncClient, token: str | None, method: str = "profile"
) -> httpx.Response:
    params = {} if token is None else {"auth": token}
    return await http.get(f"/rest/{method}.json", params=params)


async def test_authorization_code_flow_gives_the_documented_fields(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """authorize → redirect with code/state/domain/member_id/scope/server_domain → token
    exchange with exactly the §1.4 fields; ``domain`` is the OAuth host, not the portal."""
    app = emulator.oauth.register_app(scopes=("crm", "user"), redirect_uri="https://app.test/cb")
    portal = emulator.default_portal
    emulator.oauth.install(app.client_id, portal.member_id)
    r = await http.get("/oauth/authorize/", params={"client_id": app.client_id, "state": "xyz"})
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert location.netloc == "app.test"
    got = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert got["state"] == "xyz"
    assert got["domain"] == portal.domain
    assert got["member_id"] == portal.member_id
    assert got["scope"] == "crm,user"
    assert got["server_domain"] == "oauth.bitrix.info"
    r = await http.get(
        "/oauth/token/",
        params={
            "grant_type": "authorization_code",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "code": got["code"],
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= TOKEN_FIELDS
    assert body["domain"] == "oauth.bitrix.info"
    assert body["client_endpoint"] == "https://emulator.bitrix24.test/rest/"
    assert body["member_id"] == portal.member_id
    assert body["expires_in"] == 3600
    assert body["scope"] == "crm,user"
    assert body["status"] == "L"
    assert (await call(http, body["access_token"])).status_code == 200


async def test_code_is_single_use(emulator: Emulator, http: httpx.AsyncClient) -> None:
    """A code exchanged once answers invalid_grant the second time."""
    app = emulator.oauth.register_app()
    emulator.oauth.install(app.client_id, emulator.default_portal.member_id)
    code = emulator.oauth.issue_code(app.client_id, emulator.default_portal.member_id)
    params = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "code": code,
    }
    assert (await http.get("/oauth/token/", params=params)).status_code == 200
    again = await http.get("/oauth/token/", params=params)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_code_expires_after_30_seconds(emulator: Emulator, http: httpx.AsyncClient) -> None:
    """On the test clock a code is good at 29 s and dead at 31 s."""
    app = emulator.oauth.register_app()
    member = emulator.default_portal.member_id
    emulator.oauth.install(app.client_id, member)
    base = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
    }
    fresh = emulator.oauth.issue_code(app.client_id, member)
    stale = emulator.oauth.issue_code(app.client_id, member)
    emulator.advance(29)
    assert (await http.get("/oauth/token/", params={**base, "code": fresh})).status_code == 200
    emulator.advance(2)
    r = await http.get("/oauth/token/", params={**base, "code": stale})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


async def test_refresh_rotates_and_kills_the_previous_pair(
    app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """After a refresh: new pair works; old refresh → 400 invalid_grant; old access →
    401 invalid_token."""
    r = await refresh(http, app_creds, app_creds["refresh_token"])
    assert r.status_code == 200
    new = r.json()
    assert new["refresh_token"] != app_creds["refresh_token"]
    assert new["access_token"] != app_creds["access_token"]
    assert (await call(http, new["access_token"])).status_code == 200
    old_access = await call(http, app_creds["access_token"])
    assert (old_access.status_code, old_access.json()["error"]) == (401, "invalid_token")
    reused = await refresh(http, app_creds, app_creds["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")


async def test_refresh_by_post_form(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """The token endpoint accepts a form-encoded POST as well as GET."""
    r = await refresh(http, app_creds, app_creds["refresh_token"], post=True)
    assert r.status_code == 200
    assert r.json()["domain"] == "oauth.bitrix.info"


async def test_refresh_race_has_one_winner(
    app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """Two workers refreshing the same token: one gets a pair, the other invalid_grant."""
    first = await refresh(http, app_creds, app_creds["refresh_token"])
    second = await refresh(http, app_creds, app_creds["refresh_token"])
    assert sorted([first.status_code, second.status_code]) == [200, 400]


async def test_independent_chains_coexist(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """Refreshing one chain leaves another chain of the same app and user alive."""
    other = emulator.issue_tokens(app_creds["client_id"])
    assert (await refresh(http, app_creds, app_creds["refresh_token"])).status_code == 200
    assert (await call(http, other["access_token"])).status_code == 200
    assert (await refresh(http, app_creds, other["refresh_token"])).status_code == 200


async def test_expired_access_token_then_refresh_recovers(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """After the TTL the REST answer is 401 expired_token; a refresh restores access."""
    emulator.advance(3601)
    r = await call(http, app_creds["access_token"])
    assert (r.status_code, r.json()["error"]) == (401, "expired_token")
    new = (await refresh(http, app_creds, app_creds["refresh_token"])).json()
    assert (await call(http, new["access_token"])).status_code == 200


async def test_access_ttl_is_settable_and_tokens_expire_on_demand(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """set_access_ttl applies to new tokens; expire_tokens kills live ones now."""
    emulator.set_access_ttl(5)
    short = emulator.issue_tokens(app_creds["client_id"])
    assert short["expires_in"] == 5
    emulator.advance(6)
    assert (await call(http, short["access_token"])).json()["error"] == "expired_token"
    assert (await call(http, app_creds["access_token"])).status_code == 200
    assert emulator.expire_tokens(app_creds["client_id"]) >= 1
    assert (await call(http, app_creds["access_token"])).json()["error"] == "expired_token"


async def test_refresh_token_lives_28_days(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """A refresh token unused for more than 28 days answers invalid_grant."""
    emulator.advance(28 * 86400 + 1)
    r = await refresh(http, app_creds, app_creds["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


async def test_missing_and_unknown_tokens(http: httpx.AsyncClient) -> None:
    """No token → 401 NO_AUTH_FOUND; a token nobody issued → 401 invalid_token."""
    r = await call(http, None)
    assert (r.status_code, r.json()["error"]) == (401, "NO_AUTH_FOUND")
    r = await call(http, "0" * 32)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_token")


async def test_bad_client_credentials(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """A wrong secret or unknown client_id → 401 invalid_client; the token stays usable."""
    bad = dict(app_creds, client_secret="nope")
    r = await refresh(http, bad, app_creds["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert "nope" not in r.text
    unknown = dict(app_creds, client_id="local.unknown")
    assert (await refresh(http, unknown, app_creds["refresh_token"])).status_code == 401
    assert (await refresh(http, app_creds, app_creds["refresh_token"])).status_code == 200


async def test_payment_required_is_switchable(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """With the switch on, a refresh answers PAYMENT_REQUIRED; off again, it works."""
    emulator.set_payment_required(app_creds["client_id"], True)
    r = await refresh(http, app_creds, app_creds["refresh_token"])
    assert r.json() == {"error": "PAYMENT_REQUIRED", "error_description": "Payment required"}
    emulator.set_payment_required(app_creds["client_id"], False)
    assert (await refresh(http, app_creds, app_creds["refresh_token"])).status_code == 200


async def test_uninstalled_app_loses_access(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """After uninstall: REST → 401 invalid_token, refresh → PAYMENT_REQUIRED (L1895)."""
    emulator.uninstall_app(app_creds["client_id"])
    assert (await call(http, app_creds["access_token"])).json()["error"] == "invalid_token"
    r = await refresh(http, app_creds, app_creds["refresh_token"])
    assert r.json()["error"] == "PAYMENT_REQUIRED"


async def test_grant_type_checks(app_creds: dict[str, Any], http: httpx.AsyncClient) -> None:
    """Missing grant_type → invalid_request; an unknown one → unsupported_grant_type."""
    r = await http.get("/oauth/token/", params={"client_id": app_creds["client_id"]})
    assert r.json()["error"] == "invalid_request"
    r = await http.get("/oauth/token/", params={"grant_type": "password"})
    assert r.json()["error"] == "unsupported_grant_type"


async def test_authorize_refuses_an_app_not_installed(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """/oauth/authorize/ for an app that is not installed on the portal is an error;
    without a redirect_uri the code is shown instead of redirected."""
    app = emulator.oauth.register_app()
    r = await http.get("/oauth/authorize/", params={"client_id": app.client_id})
    assert r.status_code == 400
    emulator.oauth.install(app.client_id, emulator.default_portal.member_id)
    r = await http.get("/oauth/authorize/", params={"client_id": app.client_id, "state": "s"})
    assert r.status_code == 200
    assert r.json()["state"] == "s"
    assert len(r.json()["code"]) == 32


async def test_token_log_entries_hold_no_secrets(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """The request log keeps grant_type and client_id of token calls, never secrets."""
    await refresh(http, app_creds, app_creds["refresh_token"])
    await call(http, app_creds["access_token"])
    text = repr([e.as_dict() for e in emulator.log])
    assert app_creds["client_secret"] not in text
    assert app_creds["refresh_token"] not in text
    assert app_creds["access_token"] not in text
    assert emulator.requests("oauth/token")[0].params["grant_type"] == "refresh_token"
