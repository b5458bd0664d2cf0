"""The OAuth flow: token in the body, one refresh on expired_token, single-flight, clear errors."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connector.adapters.clocks import ManualClock
from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rest_client import RestClient
from connector.errors import AuthError, AuthRevokedError, FatalPortalError, RetriableError
from tests.adapters.portal_fakes import OAUTH, REST, FakePortal, MemoryTokens, stored

SECRET = "client-secret-value"


def make(
    portal: FakePortal, tokens: MemoryTokens
) -> tuple[httpx.AsyncClient, OAuthFlow, RestClient]:
    http = httpx.AsyncClient(transport=portal.transport())
    flow = OAuthFlow(
        tokens, http=http, oauth_url=OAUTH, client_id="local.app", client_secret=SECRET
    )
    client = RestClient(http, REST, connector_id="erp", auth=flow, clock=ManualClock())
    return http, flow, client


async def test_token_travels_in_the_body_not_the_url() -> None:
    """auth=<token> is in the form body; the URL carries no token."""
    portal = FakePortal()
    http, _, client = make(portal, MemoryTokens(stored()))
    async with http:
        await client.call("crm.deal.get", {"id": 1})

    seen = portal.seen[0]
    assert seen.params["auth"] == "access-0"
    assert "auth=" not in seen.url
    assert b"auth=access-0" in seen.body


async def test_expired_token_refreshes_once_and_retries() -> None:
    """expired_token → one refresh → the same call again succeeds; the new pair is stored."""
    portal = FakePortal(expired=True)
    tokens = MemoryTokens(stored())
    http, flow, client = make(portal, tokens)
    async with http:
        answer = await client.call("crm.deal.get", {"id": 1})

    assert answer.result == {"method": "crm.deal.get"}
    assert 1 == portal.refreshes == flow.refreshes
    assert tokens.tokens is not None
    assert (
        tokens.tokens.access_token,
        tokens.tokens.refresh_token,
        tokens.tokens.generation,
    ) == ("access-1", "refresh-1", 1)
    assert [s.method for s in portal.seen] == ["crm.deal.get", "/oauth/token/", "crm.deal.get"]
    refresh_request = portal.seen[1]
    assert "refresh_token=refresh-0" in refresh_request.body.decode()
    assert SECRET not in refresh_request.url


async def test_concurrent_expiry_refreshes_once() -> None:
    """Ten tasks hitting an expired token at once spend the refresh token once."""
    portal = FakePortal(expired=True)
    tokens = MemoryTokens(stored())
    http, _, client = make(portal, tokens)
    async with http:
        await asyncio.gather(*(client.call("crm.deal.get", {"id": i}) for i in range(10)))

    assert portal.refreshes == 1
    assert tokens.rotations == 1


async def test_second_token_error_is_not_refreshed_again() -> None:
    """If the retried call still says invalid token, the caller gets AuthError; one refresh."""
    portal = FakePortal(expired=True)
    portal.script("crm.deal.get", (401, {"error": "invalid_token"}))
    http, _, client = make(portal, MemoryTokens(stored()))
    async with http:
        with pytest.raises(AuthError):
            await client.call("crm.deal.get")

    assert portal.refreshes == 1


async def test_spent_refresh_token_asks_for_auth_set() -> None:
    """invalid_grant → AuthRevokedError naming `b24-connector auth set`, with no secret."""
    portal = FakePortal(expired=True, refresh="refresh-other")
    http, _, client = make(portal, MemoryTokens(stored()))
    async with http:
        with pytest.raises(AuthRevokedError) as info:
            await client.call("crm.deal.get")

    text = str(info.value)
    assert "b24-connector auth set" in text
    for secret in (SECRET, "refresh-0", "access-0"):
        assert secret not in text


async def test_no_stored_tokens_is_auth_revoked() -> None:
    """Without `auth set` there is nothing to call with: a clear AuthRevokedError."""
    portal = FakePortal()
    http, _, client = make(portal, MemoryTokens(None))
    async with http:
        with pytest.raises(AuthRevokedError, match="auth set"):
            await client.call("crm.deal.get")
    assert portal.seen == []


async def test_known_expired_token_is_refreshed_before_sending() -> None:
    """An access token past its stored expiry is refreshed first: no doomed request."""
    portal = FakePortal()
    old = stored()
    tokens = MemoryTokens(
        type(old)(**{**old.__dict__, "expires_at": datetime.now(UTC) - timedelta(minutes=1)})
    )
    http, _, client = make(portal, tokens)
    async with http:
        await client.call("crm.deal.get")

    assert [s.method for s in portal.seen] == ["/oauth/token/", "crm.deal.get"]


async def test_missing_access_token_is_refreshed_first() -> None:
    """`auth set` with only a refresh token: the first call refreshes, then sends."""
    portal = FakePortal()
    http, _, client = make(portal, MemoryTokens(stored(access=None)))
    async with http:
        await client.call("crm.deal.get")

    assert portal.refreshes == 1
    assert portal.seen[-1].params["auth"] == "access-1"


async def test_an_oauth_server_refusing_post_is_never_sent_secrets_in_a_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 405 to the POST refresh is a clear stop naming B24_OAUTH_URL; no GET carrying
    the client secret or the refresh token in its URL is ever sent or logged."""
    caplog.set_level(logging.INFO, logger="httpx")
    portal = FakePortal(expired=True, oauth_post_allowed=False)
    http, _, client = make(portal, MemoryTokens(stored()))
    async with http:
        with pytest.raises(FatalPortalError, match="B24_OAUTH_URL"):
            await client.call("crm.deal.get")

    assert portal.refreshes == 0
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert "refresh-0" not in record.getMessage()
        assert "GET" not in record.getMessage() or "oauth" not in record.getMessage()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "invalid_client"}, FatalPortalError),
        (200, {"error": "PAYMENT_REQUIRED"}, AuthRevokedError),
        (200, {"access_token": "only"}, FatalPortalError),
    ],
)
async def test_refresh_failures_map_to_errors(
    status: int, body: object, expected: type[Exception]
) -> None:
    """Bad client, unpaid app and a malformed answer each raise a clear, fatal error."""
    portal = FakePortal(expired=True, oauth_status=status, oauth_body=body)
    http, _, client = make(portal, MemoryTokens(stored()))
    async with http:
        with pytest.raises(expected):
            await client.call("crm.deal.get")


async def test_unreachable_oauth_server_is_retriable_and_redacted() -> None:
    """A network failure during refresh is retriable and its message holds no secret."""
    portal = FakePortal(expired=True)
    tokens = MemoryTokens(stored())
    http = httpx.AsyncClient(transport=portal.transport())
    flow = OAuthFlow(tokens, http=http, oauth_url=OAUTH, client_id="c", client_secret=SECRET)
    portal.network_errors = 0
    async with http:
        current = await flow.current()
        portal.network_errors = 1
        with pytest.raises(RetriableError) as info:
            await flow.exchange(current)

    assert SECRET not in str(info.value)
    assert "refresh-0" not in str(info.value)


async def test_json_request_gets_token_in_json() -> None:
    """A JSON-bodied request gets "auth" added to its JSON object."""
    captured: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request.read())
        return httpx.Response(200, json={"result": True})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    flow = OAuthFlow(
        MemoryTokens(stored()), http=http, oauth_url=OAUTH, client_id="c", client_secret=SECRET
    )
    async with http:
        await http.post(REST + "x", json={"a": 1}, auth=flow)

    assert json.loads(captured[0]) == {"a": 1, "auth": "access-0"}


def test_sync_use_is_refused() -> None:
    """The flow is async-only; a sync client gets a clear error."""
    flow = OAuthFlow(
        MemoryTokens(stored()),
        http=httpx.AsyncClient(),
        oauth_url=OAUTH,
        client_id="c",
        client_secret=SECRET,
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with httpx.Client(transport=transport) as client, pytest.raises(RuntimeError, match="Async"):
        client.get("https://x/", auth=flow)


async def test_joining_a_pair_without_access_token_refreshes_it() -> None:
    """After `auth set` (refresh token only) a worker with an old pair joins the new
    generation and refreshes it once, instead of sending an empty token."""
    portal = FakePortal(expired=True)
    tokens = MemoryTokens(stored())
    http, _, client = make(portal, tokens)
    async with http:
        await client.call("crm.deal.get")  # loads generation 1 via one refresh
        assert tokens.tokens is not None
        tokens.tokens = replace(tokens.tokens, generation=5, access_token=None)
        portal.expired = True
        await client.call("crm.deal.get")

    assert portal.refreshes == 2
    assert tokens.tokens is not None and tokens.tokens.generation == 6
    assert portal.seen[-1].params["auth"] == tokens.tokens.access_token
