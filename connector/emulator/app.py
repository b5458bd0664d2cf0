"""The emulator as an ASGI application.

:class:`Emulator` holds the portals (keyed by ``member_id``, also found by domain, with a
default portal), the shared :class:`~connector.emulator.oauth.OAuthServer`, the incoming
webhooks and the request log. :func:`create_app` builds the Starlette app:

* ``/oauth/token/`` (GET or POST) and ``/oauth/authorize/``;
* ``/rest/{method}`` and ``/rest/{method}.json`` (GET, POST form or JSON), with the token
  in ``auth`` or ``access_token``; the token also selects the portal;
* incoming webhooks ``/rest/{user_id}/{secret}/{method}``;
* the control surface under ``/_emulator/`` and the Push&Pull routes.

Per REST request: parse parameters; take ``auth``/``access_token`` and ``auth_connector``
out of them into the :class:`CallContext`; authenticate; overload switch; leaky bucket;
slow-down; dispatch (scope, operating time, injected 500s); envelope; then
``portal.events.finish_request`` and one ``portal.pull.notify_offline`` per app.

In tests use it in-process: ``async with emulator.client() as http: ...`` (an
``httpx.AsyncClient`` over ``httpx.ASGITransport``), or on a real port with
``server.ServerThread``. ``Emulator.lock`` is held while a request touches portal state
and by every control operation, so a test thread may drive the control API while the
server thread serves.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from connector.emulator.clock import Clock
from connector.emulator.context import CallContext
from connector.emulator.control import ControlAPI
from connector.emulator.control_http import control_routes
from connector.emulator.dispatch import invoke
from connector.emulator.oauth import OAuthError, OAuthServer
from connector.emulator.params import ParamsError, as_int, as_str, merge, parse_body, parse_query
from connector.emulator.portal import PLANS, Portal
from connector.emulator.rest_errors import RestError

log = logging.getLogger(__name__)

METHOD_MODULES = (
    "connector.emulator.meta",
    "connector.emulator.batch",
    "connector.emulator.crm",
    "connector.emulator.events",
    "connector.emulator.offline_queue",
    "connector.emulator.pull",
)
AUTH_KEYS = ("auth", "access_token")
ALL_WEBHOOK_SCOPES = frozenset(
    {
        "crm",
        "user",
        "user_brief",
        "user_basic",
        "pull",
        "pull_channel",
        "placement",
        "entity",
        "im",
        "task",
    }
)


def load_method_modules() -> None:
    """Import every module that registers REST methods (idempotent)."""
    for name in METHOD_MODULES:
        importlib.import_module(name)


@dataclass
class Webhook:
    """An incoming webhook: ``/rest/<user_id>/<secret>/`` on one portal."""

    member_id: str
    user_id: int
    secret: str
    scopes: frozenset[str] = ALL_WEBHOOK_SCOPES


@dataclass
class LogEntry:
    """One request as the emulator saw it (no tokens or secrets)."""

    seq: int
    time: float
    portal: str
    method: str
    params: dict[str, Any]
    auth_connector: str = ""
    client_id: str | None = None
    webhook_user: int | None = None
    status: int = 200
    error: str | None = None
    accepted: bool | None = None
    kind: str = "rest"
    sub_calls: list[dict[str, Any]] = field(default_factory=list)
    """For ``batch``: each sub-command's key, method, params, auth_connector, error."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "portal": self.portal,
            "method": self.method,
            "params": self.params,
            "auth_connector": self.auth_connector,
            "client_id": self.client_id,
            "webhook_user": self.webhook_user,
            "status": self.status,
            "error": self.error,
            "accepted": self.accepted,
            "kind": self.kind,
            "sub_calls": self.sub_calls,
        }


class Emulator(ControlAPI):
    """A set of emulated portals behind one OAuth server, plus the request log."""

    def __init__(
        self,
        *,
        domain: str = "emulator.bitrix24.test",
        plan: str = "pro",
        seed: int = 0,
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        clock: Clock | None = None,
        require_https: bool = False,
        log_limit: int = 100_000,
    ) -> None:
        load_method_modules()
        self.clock = clock or Clock()
        self.seed = seed
        self.require_https = require_https
        self.oauth = OAuthServer(clock=self.clock)
        self.portals: dict[str, Portal] = {}
        self.webhooks: dict[str, Webhook] = {}
        # the newest ``log_limit`` requests: a long-running emulator must not grow forever
        self.log: deque[LogEntry] = deque(maxlen=log_limit)
        self._seq = 0
        self.internal_errors: list[str] = []
        self.lock = threading.RLock()
        """Held while a request touches portal state (and by the control API)."""
        self.default_portal = self.add_portal(domain, plan=plan)
        if rate_limit is not None or rate_burst is not None:
            self.default_portal.limits.configure(rate=rate_limit, burst=rate_burst)
        self._app: Starlette | None = None

    # --- portals ---------------------------------------------------------------------

    def add_portal(self, domain: str, *, plan: str = "pro") -> Portal:
        """Create a portal (its ``member_id`` is derived from the domain)."""
        portal = Portal(domain=domain, plan=PLANS[plan.lower()], clock=self.clock)
        self.portals[portal.member_id] = portal
        return portal

    def portal(self, key: str | None = None) -> Portal:
        """A portal by ``member_id`` or domain; the default one for ``None``."""
        if key is None:
            return self.default_portal
        if key in self.portals:
            return self.portals[key]
        for portal in self.portals.values():
            if portal.domain == key:
                return portal
        raise KeyError(f"no portal {key!r}")

    def rest_base(self, portal: Portal, base_url: str) -> str:
        """``client_endpoint`` of ``portal`` as seen from ``base_url``: on a loopback or IP
        address every portal shares the base; under a portal's host name each portal
        has its own (same scheme and port)."""
        scheme, _, netloc = base_url.rstrip("/").partition("://")
        host, sep, port = netloc.partition(":")
        if self._named_portal(host) is not None or host == self.oauth.domain:
            netloc = f"{portal.domain}{sep}{port}"
        return f"{scheme}://{netloc}/rest/"

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

    # --- webhooks ----------------------------------------------------------------------

    def add_webhook(
        self,
        user_id: int = 1,
        *,
        secret: str | None = None,
        scopes: frozenset[str] | set[str] | None = None,
        portal: str | None = None,
    ) -> Webhook:
        """Create an incoming webhook for ``user_id`` (its URL part is ``/<uid>/<secret>/``)."""
        target = self.portal(portal)
        if user_id not in target.users:
            raise KeyError(f"no user {user_id} on {target.domain}")
        hook = Webhook(
            member_id=target.member_id,
            user_id=user_id,
            secret=secret or secrets.token_hex(8),
            scopes=frozenset(scopes) if scopes is not None else ALL_WEBHOOK_SCOPES,
        )
        self.webhooks[hook.secret] = hook
        return hook

    # --- the app -------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The Starlette application (built once)."""
        if self._app is None:
            self._app = create_app(self)
        return self._app

    def client(
        self, base_url: str = "https://emulator.bitrix24.test", **kwargs: Any
    ) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` talking to this emulator in-process."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app()), base_url=base_url, **kwargs
        )

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

    def finish_request(self, portal: Portal, ctx: CallContext) -> dict[str, dict[str, int]]:
        """Queue the request's firings and send one ``event_offline`` push per app."""
        counts: dict[str, dict[str, int]] = {}
        finish = getattr(portal.events, "finish_request", None)
        if finish is not None:
            counts = {app: dict(per) for app, per in finish(ctx).items()}
        notify = getattr(portal.pull, "notify_offline", None)
        if notify is not None:
            for client_id, per_connector in counts.items():
                if per_connector:
                    notify(client_id, per_connector)
        return counts

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


def create_app(emulator: Emulator) -> Starlette:
    """The Starlette application serving ``emulator``."""

    async def rest(request: Request) -> Response:
        return await emulator.handle_rest(request, request.path_params["method"])

    async def webhook(request: Request) -> Response:
        user = request.path_params["user_id"]
        secret = request.path_params["secret"]
        return await emulator.handle_rest(
            request, request.path_params["method"], webhook=(user, secret)
        )

    async def token(request: Request) -> Response:
        return await emulator.handle_token(request)

    async def authorize(request: Request) -> Response:
        return await emulator.handle_authorize(request)

    routes: list[BaseRoute] = [
        Route("/oauth/token/", token, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["GET", "POST"]),
        Route("/oauth/authorize/", authorize, methods=["GET"]),
        Route("/oauth/authorize", authorize, methods=["GET"]),
        Route("/rest/{user_id:int}/{secret}/{method}", webhook, methods=["GET", "POST"]),
        Route("/rest/{user_id:int}/{secret}/{method}/", webhook, methods=["GET", "POST"]),
        Route("/rest/{method}", rest, methods=["GET", "POST"]),
        Route("/rest/{method}/", rest, methods=["GET", "POST"]),
    ]
    routes.extend(control_routes(emulator))
    pull_routes = getattr(emulator.default_portal.pull, "routes", None)
    if pull_routes is not None:
        routes.extend(pull_routes())
    return Starlette(routes=routes)
