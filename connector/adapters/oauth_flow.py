"""OAuth for portal calls as an ``httpx.Auth`` flow.

:class:`OAuthFlow` adds the stored access token (``auth=…``, in the form body so it never
lands in a URL or an access log) to each request. When the portal answers
``expired_token`` or ``invalid_token`` it refreshes once against ``B24_OAUTH_URL`` and
sends the request again; a second token error goes back to the caller. It never
refreshes on a timer or "just in case" (digest §1.7), only when the stored expiry has
passed or the portal said so.

The refresh is single-flight: inside the process behind an ``asyncio.Lock``, across
processes through :meth:`TokenSource.rotate` (the token store's row lock and
``generation``). ``invalid_grant`` becomes
:class:`~connector.errors.AuthRevokedError`, telling the operator to run
``b24-connector auth set``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

import httpx

from connector.adapters.log_redaction import guard_logger
from connector.core.oauth_tokens import TokenSet, parse_token_answer
from connector.core.portal_answers import AUTH_SET_HINT, classify_token_answer, json_body
from connector.core.redaction import redact_text
from connector.errors import AuthRevokedError, FatalPortalError, RetriableError

__all__ = ["REFRESH_CODES", "OAuthFlow", "TokenSource"]

log = logging.getLogger(__name__)

REFRESH_CODES = frozenset({"expired_token", "invalid_token"})
EXCHANGE_TIMEOUT_S = 120.0
_NO_AUTH = httpx.Auth()  # the base flow sends the request unchanged


class TokenSource(Protocol):
    """What the flow needs from the token store (``store.tokens.TokenStore``)."""

    def load(self) -> TokenSet | None: ...

    def rotate(
        self, seen_generation: int, exchange: Callable[[TokenSet], TokenSet]
    ) -> TokenSet: ...


class OAuthFlow(httpx.Auth):
    """Bitrix24 OAuth for one portal; pass it as ``auth=`` on each portal request."""

    def __init__(
        self,
        store: TokenSource,
        *,
        http: httpx.AsyncClient,
        oauth_url: str,
        client_id: str,
        client_secret: str,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._http = http
        self._token_url = oauth_url.rstrip("/") + "/oauth/token/"
        self._client_id = client_id
        self._client_secret = client_secret
        self._now = now or (lambda: datetime.now(UTC))
        self._tokens: TokenSet | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0
        guard_logger("httpx")  # belt and braces: no secret reaches httpx's request log

    # --- httpx.Auth ------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuthFlow works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = await self.current()
        response = yield _with_token(request, tokens.access_token or "")
        if response.status_code in (400, 401, 403):
            await response.aread()
        if not _is_token_error(response):
            return
        log.info("oauth.token_rejected", extra={"oauth.generation": tokens.generation})
        tokens = await self.refresh(tokens.generation)
        yield _with_token(request, tokens.access_token or "")

    # --- tokens ----------------------------------------------------------------------

    async def current(self) -> TokenSet:
        """The tokens to use now; refreshes first only if the access token is known dead."""
        if self._tokens is None:
            self._tokens = await asyncio.to_thread(self._store.load)
        if self._tokens is None:
            raise AuthRevokedError(f"no tokens stored for this portal; {AUTH_SET_HINT}")
        if self._tokens.expired(self._now()):
            return await self.refresh(self._tokens.generation)
        return self._tokens

    async def refresh(self, seen_generation: int) -> TokenSet:
        """Rotate the pair once for everyone that saw ``seen_generation``."""
        async with self._lock:
            if self._tokens is not None and self._tokens.generation > seen_generation:
                return self._tokens
            loop = asyncio.get_running_loop()

            def exchange(current: TokenSet) -> TokenSet:
                # runs in the store's thread, with the row locked; the HTTP call runs on
                # the loop. The timeout frees the lock even if the loop never answers.
                future = asyncio.run_coroutine_threadsafe(self.exchange(current), loop)
                try:
                    return future.result(timeout=EXCHANGE_TIMEOUT_S)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    raise RetriableError("token refresh timed out") from None

            tokens = await asyncio.to_thread(self._store.rotate, seen_generation, exchange)
            if tokens.expired(self._now()):
                # we joined a pair we cannot use (``auth set`` without an access token,
                # or one already expired): rotate that one, once
                tokens = await asyncio.to_thread(self._store.rotate, tokens.generation, exchange)
            self._tokens = tokens
            return tokens

    async def exchange(self, current: TokenSet) -> TokenSet:
        """Spend ``current.refresh_token`` at the OAuth server; return the new pair.

        POST with a form body keeps the secrets out of URLs (digest A28). A server that
        refuses POST (405) is not sent the documented GET: that would put the client
        secret and the refresh token in a URL, where proxies and logs keep them.
        """
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": current.refresh_token,
        }
        secrets = (self._client_secret, *current.secrets())
        self.refreshes += 1
        try:
            response = await self._http.post(self._token_url, data=form, auth=_NO_AUTH)
        except httpx.HTTPError as exc:
            raise RetriableError(
                f"token refresh: cannot reach the OAuth server: "
                f"{redact_text(type(exc).__name__ + ': ' + str(exc), secrets)}"
            ) from None
        if response.status_code == 405:
            raise FatalPortalError(
                "token refresh: the OAuth server refuses POST (HTTP 405); the connector "
                "never sends its secrets in a URL (GET) — check B24_OAUTH_URL",
                status=405,
            )
        body = json_body(response.content)
        error = classify_token_answer(response.status_code, body)
        if error is not None:
            log.error("oauth.refresh_failed", extra={"oauth.code": error.code})
            raise error
        assert isinstance(body, dict)
        try:
            return parse_token_answer(current.portal, body, self._now())
        except ValueError as exc:
            raise FatalPortalError(f"token refresh: {exc}") from None


def _with_token(request: httpx.Request, token: str) -> httpx.Request:
    """A copy of ``request`` carrying ``auth=<token>`` in its form body (or query)."""
    extra = urlencode({"auth": token})
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    if request.method in ("GET", "HEAD"):
        url = request.url.copy_merge_params({"auth": token})
        return httpx.Request(request.method, url, headers=headers, extensions=request.extensions)
    body = request.read()
    if "json" in request.headers.get("content-type", ""):
        data = json.loads(body or b"{}")
        data["auth"] = token
        content = json.dumps(data).encode()
    else:
        content = body + b"&" + extra.encode() if body else extra.encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    return httpx.Request(
        request.method, request.url, headers=headers, content=content, extensions=request.extensions
    )


def _is_token_error(response: httpx.Response) -> bool:
    if response.status_code not in (400, 401, 403):
        return False
    body = json_body(response.content)
    return isinstance(body, dict) and str(body.get("error", "")).lower() in REFRESH_CODES
