"""The emulator as an ASGI application.

:class:`Emulator` holds the portals (keyed by ``member_id``, also found by domain, with a
default portal), the shared :class:`~connector.emulator.oauth.OAuthServer`, the incoming
webhooks (``webhooks.Webhook``) and the request log (``request_log.LogEntry``).
:func:`create_app` builds the Starlette app:

* ``/oauth/token/`` (GET or POST) and ``/oauth/authorize/``;
* ``/rest/{method}`` and ``/rest/{method}.json`` (GET, POST form or JSON), with the token
  in ``auth`` or ``access_token``; the token also selects the portal;
* incoming webhooks ``/rest/{user_id}/{secret}/{method}``;
* the control surface under ``/_emulator/`` and the Push&Pull routes.

The handlers behind those routes are the mixin ``request_handling.RequestHandling``;
the Python control API is the mixin ``control.ControlAPI``.

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

import importlib
import secrets
import threading
from collections import deque
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connector.emulator.clock import Clock
from connector.emulator.context import CallContext
from connector.emulator.control import ControlAPI
from connector.emulator.control_http import control_routes
from connector.emulator.oauth import OAuthServer
from connector.emulator.portal import PLANS, Portal
from connector.emulator.request_handling import AUTH_KEYS, RequestHandling
from connector.emulator.request_log import LogEntry
from connector.emulator.webhooks import ALL_WEBHOOK_SCOPES, Webhook

__all__ = [
    "ALL_WEBHOOK_SCOPES",
    "AUTH_KEYS",
    "METHOD_MODULES",
    "Emulator",
    "LogEntry",
    "Webhook",
    "create_app",
    "load_method_modules",
]

METHOD_MODULES = (
    "connector.emulator.meta",
    "connector.emulator.batch",
    "connector.emulator.crm_methods",
    "connector.emulator.crm_userfield_methods",
    "connector.emulator.event_methods",
    "connector.emulator.offline_methods",
    "connector.emulator.pull_methods",
)


def load_method_modules() -> None:
    """Import every module that registers REST methods (idempotent)."""
    for name in METHOD_MODULES:
        importlib.import_module(name)


class Emulator(ControlAPI, RequestHandling):
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
