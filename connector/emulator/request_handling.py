"""How the emulator answers HTTP requests, mixed into ``app.Emulator`` as
:class:`RequestHandling`.

* REST (``/rest/{method}``, webhooks ``/rest/{user_id}/{secret}/{method}``): parse
  parameters; take ``auth``/``access_token`` and ``auth_connector`` out of them into the
  :class:`CallContext`; authenticate (token or webhook; the token also selects the
  portal); overload switch; leaky bucket; slow-down; dispatch (scope, operating time,
  injected 500s); envelope; then ``Emulator.finish_request``.
* OAuth: ``/oauth/token/`` (GET or POST) and ``/oauth/authorize/``.

Every request gets a :class:`~connector.emulator.request_log.LogEntry`. The routes that
call these handlers are built by ``app.create_app``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from connector.emulator.context import CallContext
from connector.emulator.dispatch import invoke
from connector.emulator.oauth import OAuthError
from connector.emulator.params import ParamsError, as_int, as_str, merge, parse_body, parse_query
from connector.emulator.request_log import LogEntry
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.clock import Clock
    from connector.emulator.oauth import OAuthServer
    from connector.emulator.portal import Portal
    from connector.emulator.webhooks import Webhook

log = logging.getLogger("connector.emulator.app")
"""Handler crashes are logged under the ``Emulator``'s module name, as they always were."""

AUTH_KEYS = ("auth", "access_token")


class RequestHandling:
    """The HTTP handlers of :class:`~connector.emulator.app.Emulator`, which provides
    the state declared here."""

    clock: Clock
    oauth: OAuthServer
    portals: dict[str, Portal]
    webhooks: dict[str, Webhook]
    log: deque[LogEntry]
    default_portal: Portal
    require_https: bool
    internal_errors: list[str]
    lock: threading.RLock
    _seq: int

    def portal(self, key: str | None = None) -> Portal:
        raise NotImplementedError

    def finish_request(self, portal: Portal, ctx: CallContext) -> dict[str, dict[str, int]]:
        raise NotImplementedError

    def rest_base(self, portal: Portal, base_url: str) -> str:
        raise NotImplementedError

    # --- portals by host -----------------------------------------------------------------

    def _named_portal(self, host: str) -> Portal | None:
        """The portal whose domain is ``host`` (without port), if any."""
        name = host.split(":", 1)[0]
        for portal in self.portals.values():
            if portal.domain == name:
                return portal
        return None

    def _portal_for_host(self, host: str) -> Portal:
        name = host.split(":", 1)[0]
        for portal in self.portals.values():
            if portal.domain == name:
                return portal
        return self.default_portal

    def _log(
        self, portal: Portal, method: str, params: dict[str, Any], *, kind: str = "rest"
    ) -> LogEntry:
        with self.lock:
            self._seq += 1
            entry = LogEntry(
                seq=self._seq,
                time=self.clock.now(),
                portal=portal.member_id,
                method=method,
                params=params,
                kind=kind,
            )
            self.log.append(entry)
            return entry

    # --- REST ---------------------------------------------------------------------------------

    async def handle_rest(
        self, request: Request, method: str, webhook: tuple[int, str] | None = None
    ) -> Response:
        method = _strip_transport(method)
        try:
            params = await _read_params(request)
        except ParamsError as exc:
            with self.lock:
                portal = self._portal_for_host(request.url.netloc)
                entry = self._log(portal, method.lower(), {})
                return self._error(entry, RestError("INVALID_REQUEST", str(exc), 400))
        token = ""
        for key in AUTH_KEYS:
            value = params.pop(key, None)
            if not token and value is not None:
                token = as_str(value)
        connector = as_str(params.pop("auth_connector", ""))
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        with self.lock:
            entry = self._log(
                self._portal_for_host(request.url.netloc),
                method.lower(),
                dict(params),
                kind="webhook" if webhook else "rest",
            )
            entry.auth_connector = connector
            try:
                if self.require_https and request.url.scheme != "https":
                    raise RestError("INVALID_REQUEST", "Https required", 401)
                portal, ctx = self._admit(entry, token, webhook, connector, base_url)
            except RestError as exc:
                return self._error(entry, exc)
        await portal.limits.slow_down(method)
        with self.lock:
            response = self._dispatch(entry, portal, ctx, method, params)
            entry.sub_calls = list(ctx.batch_calls)
            self.finish_request(portal, ctx)
        return response

    def _admit(
        self,
        entry: LogEntry,
        token: str,
        webhook: tuple[int, str] | None,
        connector: str,
        base_url: str,
    ) -> tuple[Portal, CallContext]:
        """Authenticate, then the overload switch and the leaky bucket."""
        if webhook is not None:
            portal, ctx = self._webhook_context(webhook, connector, base_url)
            entry.webhook_user = ctx.user_id
        else:
            portal, ctx = self._oauth_context(token, connector, base_url)
            entry.client_id = ctx.client_id
        entry.portal = portal.member_id
        portal.limits.check_overload()
        entry.accepted = portal.limits.admit()
        if not entry.accepted:
            raise portal.limits.query_limit_error()
        return portal, ctx

    def _dispatch(
        self,
        entry: LogEntry,
        portal: Portal,
        ctx: CallContext,
        method: str,
        params: dict[str, Any],
    ) -> JSONResponse:
        """Run the method and build the envelope (or the error answer)."""
        try:
            done = invoke(portal, ctx, method, params)
        except RestError as exc:
            return self._error(entry, exc)
        except Exception as exc:  # a bug in a handler: answer like the portal, keep a note
            log.exception("emulator handler %s failed", method)
            self.internal_errors.append(f"{method}: {type(exc).__name__}: {exc}")
            return self._error(
                entry, RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
            )
        body: dict[str, Any] = {"result": done.result.result}
        if done.result.next is not None:
            body["next"] = done.result.next
        if done.result.total is not None:
            body["total"] = done.result.total
        body["time"] = done.time
        return JSONResponse(body)

    def _error(self, entry: LogEntry, exc: RestError) -> JSONResponse:
        entry.status = exc.status
        entry.error = exc.code
        return JSONResponse(exc.body(), status_code=exc.status)

    def _webhook_context(
        self, webhook: tuple[int, str], connector: str, base_url: str
    ) -> tuple[Portal, CallContext]:
        user_id, secret = webhook
        hook = self.webhooks.get(secret)
        if hook is None or hook.user_id != user_id or hook.member_id not in self.portals:
            raise RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401)
        portal = self.portals[hook.member_id]
        user = portal.users.get(user_id)
        if user is None:
            raise RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401)
        ctx = CallContext(
            client_id=None,
            user_id=user.id,
            is_admin=user.is_admin,
            auth_connector=connector,
            via_webhook=True,
            scopes=hook.scopes,
            base_url=base_url,
        )
        return portal, ctx

    def _oauth_context(
        self, token: str, connector: str, base_url: str
    ) -> tuple[Portal, CallContext]:
        pair = self.oauth.authenticate(token)
        portal = self.portals.get(pair.member_id)
        addressed = self._named_portal(base_url.split("://", 1)[-1])
        if portal is None or (addressed is not None and addressed is not portal):
            # a token of one portal sent to another portal's host
            raise RestError("invalid_token", "The access token provided is invalid.", 401)
        user = portal.users.get(pair.user_id)
        is_admin = bool(user and user.is_admin)
        ctx = CallContext(
            client_id=pair.client_id,
            user_id=pair.user_id,
            is_admin=is_admin,
            auth_connector=connector,
            scopes=frozenset(pair.scopes),
            base_url=base_url,
        )
        return portal, ctx

    # --- OAuth ------------------------------------------------------------------------------

    async def handle_token(self, request: Request) -> Response:
        try:
            params = await _read_params(request)
        except ParamsError:
            params = {}
        portal = self.default_portal
        entry = self._log(
            portal,
            "oauth/token",
            {
                "grant_type": as_str(params.get("grant_type")),
                "client_id": as_str(params.get("client_id")),
            },
            kind="oauth",
        )
        entry.client_id = as_str(params.get("client_id")) or None
        base_url = f"{request.url.scheme}://{request.url.netloc}"

        def client_endpoint(member_id: str) -> str:
            return self.rest_base(self.portals[member_id], base_url)

        with self.lock:
            try:
                body = self.oauth.token_endpoint(params, f"{base_url}/rest/", client_endpoint)
            except OAuthError as exc:
                entry.status = exc.status
                entry.error = exc.code
                return JSONResponse(exc.body(), status_code=exc.status)
            entry.portal = as_str(body.get("member_id"))
        return JSONResponse(body)

    async def handle_authorize(self, request: Request) -> Response:
        params = parse_query(request.url.query)
        client_id = as_str(params.get("client_id"))
        state = as_str(params.get("state"))
        portal = self._portal_for_host(request.url.netloc)
        if "domain" in params:
            with contextlib.suppress(KeyError):
                portal = self.portal(as_str(params["domain"]))
        user_id = as_int(params.get("user_id"), 1) or 1
        app = self.oauth.apps.get(client_id)
        if app is None or self.oauth.installation(client_id, portal.member_id) is None:
            return JSONResponse(
                {"error": "ERROR_OAUTH", "error_description": "Application not installed"},
                status_code=400,
            )
        with self.lock:
            code = self.oauth.issue_code(client_id, portal.member_id, user_id)
        answer = {
            "code": code,
            "state": state,
            "domain": portal.domain,
            "member_id": portal.member_id,
            "scope": app.scope_string,
            "server_domain": self.oauth.domain,
        }
        if app.redirect_uri:
            sep = "&" if "?" in app.redirect_uri else "?"
            return RedirectResponse(f"{app.redirect_uri}{sep}{urlencode(answer)}", 302)
        return JSONResponse(answer)


def _strip_transport(method: str) -> str:
    for suffix in (".json", ".xml"):
        if method.lower().endswith(suffix):
            return method[: -len(suffix)]
    return method


async def _read_params(request: Request) -> dict[str, Any]:
    query = parse_query(request.url.query)
    if request.method in ("POST", "PUT"):
        body = await request.body()
        return merge(query, parse_body(body, request.headers.get("content-type", "")))
    return query
