"""The control surface for tests and demos: a Python API on ``Emulator``; the same
operations over HTTP under ``/_emulator/`` (JSON in, JSON out; loopback only) live in
``control_http``.

Python (``ControlAPI``, mixed into ``Emulator``)          HTTP
--------------------------------------------------       ---------------------------------
``install_app(...)`` → app + first token pair             ``POST /_emulator/apps``
``issue_tokens(client_id)`` → a new chain                 ``POST /_emulator/tokens``
``expire_tokens(client_id=None)``                         ``POST /_emulator/tokens/expire``
``set_access_ttl(seconds)``                               ``POST /_emulator/tokens/ttl``
``set_token_shape('seed'|'current')``                    ``POST /_emulator/tokens/shape``
``set_empty_multi_in_lists(on)``                         ``POST /_emulator/crm/shape``
``set_payment_required(client_id, on)``                   ``POST /_emulator/apps/payment``
``uninstall_app(client_id)``                              ``POST /_emulator/apps/uninstall``
``add_webhook(user_id, ...)`` (on ``Emulator``)           ``POST /_emulator/webhooks``
``add_user(user_id, name, is_admin=)``                    ``POST /_emulator/users``
``deliver_online_events()`` (POST to event handlers)      ``POST /_emulator/events/deliver``
``seed_crm(companies=.., contacts=.., ...)``              ``POST /_emulator/seed``
``ui_add / ui_update / ui_delete`` (as user X)            ``POST /_emulator/ui/{action}``
``set_plan(name)``                                        ``POST /_emulator/plan``
``set_limits(rate=, burst=, enabled=, ...)``              ``POST /_emulator/limits``
``set_faults(...)`` / ``clear_faults()``                  ``POST /_emulator/faults``
``requests(method=None)`` / ``clear_log()``               ``GET|DELETE /_emulator/log``
``queue_state()``                                         ``GET /_emulator/queue``
``queue_raw(client_id, connector_id, name, data)``        ``POST /_emulator/queue/raw``
``advance(seconds)``                                      ``POST /_emulator/clock/advance``
``pull_command(command, ...)``                            ``POST /_emulator/pull/{command}``
``state()``                                               ``GET /_emulator/state``

Every HTTP operation takes an optional ``portal`` (member_id or domain) in its body or
query; without it the default portal is used.

Where the methods live: ``ControlAPI`` (this module) has the apps, tokens, users and
deliveries (``install_app`` … ``uninstall_app``, ``add_user``,
``deliver_online_events``, ``post_form``); it mixes in ``control_crm.CrmControl``
(``ui_*``, ``seed_crm``), ``control_limits.LimitsControl`` (``set_plan``, ``set_limits``,
``set_faults``, ``clear_faults``) and ``control_inspection.InspectionControl``
(``requests``, ``clear_log``, ``queue_state``, ``queue_raw``, ``advance``,
``pull_command``, ``state``); their shared base is ``control_base``. ``add_webhook`` is
``app.Emulator``'s own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from connector.emulator.control_base import locked
from connector.emulator.control_crm import ENTITIES, CrmControl, seed_records
from connector.emulator.control_inspection import InspectionControl
from connector.emulator.control_limits import LimitsControl
from connector.emulator.oauth import DEFAULT_SCOPES
from connector.emulator.params import build_query
from connector.emulator.portal import Portal, User

__all__ = ["AUTH_FIELDS", "ENTITIES", "ControlAPI", "install_event", "locked", "seed_records"]

log = logging.getLogger(__name__)

AUTH_FIELDS = (
    "access_token",
    "expires",
    "expires_in",
    "scope",
    "server_endpoint",
    "status",
    "client_endpoint",
    "member_id",
    "user_id",
)
"""The ``auth[...]`` keys of an event POST (a refresh token only for a few events)."""


class ControlAPI(CrmControl, LimitsControl, InspectionControl):
    """Test/demo operations; mixed into :class:`~connector.emulator.app.Emulator`."""

    form_sender: Callable[[str, str], None] | None = None
    """Delivers the portal's outgoing POSTs (``ONAPPINSTALL``, online event handlers) as
    (url, form body); ``None``: POST them over HTTP from a background thread."""
    delivery_delay: float = 0.0
    """Seconds to wait before such a POST (event handlers "can fire late", L1807)."""

    # --- apps and tokens ------------------------------------------------------------------

    @locked
    def install_app(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        scopes: tuple[str, ...] | list[str] = DEFAULT_SCOPES,
        user_id: int = 1,
        portal: str | None = None,
        redirect_uri: str = "",
        install_callback: str = "",
        base_url: str = "https://emulator.bitrix24.test",
    ) -> dict[str, Any]:
        """Register and install an app and hand out its first token pair.

        Returns the token response (§1.4 fields) plus ``client_id``, ``client_secret``
        and ``application_token``. An already registered ``client_id`` keeps its secret.
        With ``install_callback`` the portal also posts ``ONAPPINSTALL`` there (§1.6).
        """
        target = self.portal(portal)
        app = self.oauth.apps.get(client_id) if client_id else None
        if app is None or (client_secret is not None and client_secret != app.client_secret):
            app = self.oauth.register_app(
                client_id,
                client_secret,
                scopes=scopes,
                redirect_uri=redirect_uri,
                install_callback=install_callback,
            )
        inst = self.oauth.install(app.client_id, target.member_id, user_id)
        pair = self.oauth.issue_tokens(app.client_id, target.member_id, user_id)
        answer = self.oauth.token_response(
            pair, self.rest_base(target, base_url), f"{base_url.rstrip('/')}/rest/"
        )
        answer.update(
            client_id=app.client_id,
            client_secret=app.client_secret,
            application_token=inst.application_token,
        )
        if app.install_callback:
            self.post_form(app.install_callback, build_query(install_event(answer, target)))
        return answer

    def post_form(self, url: str, body: str) -> None:
        """Send one form-encoded POST the way the portal does (late, never retried)."""
        if self.form_sender is not None:
            self.form_sender(url, body)
            return
        delay = self.delivery_delay

        def post() -> None:
            if delay > 0:
                time.sleep(delay)
            try:
                with httpx.Client(timeout=10) as client:
                    client.post(
                        url,
                        content=body,
                        headers={"content-type": "application/x-www-form-urlencoded"},
                    )
            except httpx.HTTPError:
                log.warning("the emulator's POST to an app handler failed")

        threading.Thread(target=post, name="b24-emulator-post", daemon=True).start()

    @locked
    def deliver_online_events(
        self, *, portal: str | None = None, base_url: str = "https://emulator.bitrix24.test"
    ) -> None:
        """POST online event deliveries (``event.bind`` with a handler, and
        ``onOfflineEvent``) to their handlers: ``event``, ``data``, ``ts`` and ``auth[...]``
        with a fresh access token of the app for the event's user and the
        ``application_token``; ``onOfflineEvent`` also carries a refresh token."""
        target = self.portal(portal)

        def send(delivery: Any) -> None:
            payload = self.event_payload(target, delivery, base_url)
            if payload is not None and delivery.handler:
                self.post_form(delivery.handler, build_query(payload))

        target.events.sender = send

    def event_payload(self, portal: Portal, delivery: Any, base_url: str) -> dict[str, Any] | None:
        """The form an event handler receives (``None`` if the app is not installed)."""
        inst = self.oauth.installation(delivery.app_id, portal.member_id)
        if inst is None:
            return None
        user_id = delivery.user_id or inst.installed_by
        pair = self.oauth.issue_tokens(delivery.app_id, portal.member_id, user_id)
        answer = self.oauth.token_response(
            pair, self.rest_base(portal, base_url), f"{base_url.rstrip('/')}/rest/"
        )
        auth = {k: answer[k] for k in AUTH_FIELDS if k in answer}
        auth.update(domain=portal.domain, application_token=inst.application_token)
        if delivery.event.upper() == "ONOFFLINEEVENT":
            auth["refresh_token"] = answer["refresh_token"]
        return {
            "event": delivery.event,
            "data": delivery.data,
            "ts": str(delivery.ts),
            "auth": auth,
        }

    @locked
    def add_user(
        self, user_id: int, name: str, *, is_admin: bool = False, portal: str | None = None
    ) -> User:
        """Add (or replace) a portal user; only admins may use ``event.offline.*``."""
        user = User(int(user_id), name, is_admin=is_admin)
        self.portal(portal).users[user.id] = user
        return user

    @locked
    def issue_tokens(
        self,
        client_id: str,
        *,
        user_id: int = 1,
        portal: str | None = None,
        base_url: str = "https://emulator.bitrix24.test",
    ) -> dict[str, Any]:
        """A new, independent token chain for an installed app."""
        target = self.portal(portal)
        if self.oauth.installation(client_id, target.member_id) is None:
            raise KeyError(f"{client_id} is not installed on {target.domain}")
        pair = self.oauth.issue_tokens(client_id, target.member_id, user_id)
        return self.oauth.token_response(pair, f"{base_url.rstrip('/')}/rest/")

    @locked
    def expire_tokens(self, client_id: str | None = None, *, portal: str | None = None) -> int:
        """Expire live access tokens now (refresh tokens stay usable)."""
        member_id = self.portal(portal).member_id if portal is not None else None
        return self.oauth.expire_access_tokens(client_id, member_id)

    def set_access_ttl(self, seconds: int) -> None:
        """Lifetime of access tokens issued from now on."""
        self.oauth.access_ttl = int(seconds)

    @locked
    def set_empty_multi_in_lists(self, on: bool = True, *, portal: str | None = None) -> None:
        """List answers carry ``PHONE: []`` for a selected, empty multi-field (on), or
        leave the key out (off, the default, as ``get`` always does)."""
        self.portal(portal).crm.empty_multi_in_lists = on

    @locked
    def set_token_shape(self, shape: str) -> None:
        """``seed``: token answers carry only the course sample's fields (``expires_in``, no
        ``expires`` or ``user_id``); ``current`` (the default): both."""
        if shape not in ("seed", "current"):
            raise ValueError(f"token shape {shape!r}: seed or current")
        self.oauth.token_shape = shape

    @locked
    def set_payment_required(
        self, client_id: str, on: bool = True, *, portal: str | None = None
    ) -> None:
        self.oauth.set_payment_required(client_id, self.portal(portal).member_id, on)

    @locked
    def uninstall_app(self, client_id: str, *, portal: str | None = None) -> None:
        """Delete the app from the portal: tokens stop working, bindings go."""
        target = self.portal(portal)
        self.oauth.uninstall(client_id, target.member_id)
        remove = getattr(target.events, "remove_app", None)
        if remove is not None:
            remove(client_id)


def install_event(answer: dict[str, Any], portal: Portal) -> dict[str, Any]:
    """The ``ONAPPINSTALL`` POST (L1811–1830): event, data, ts and auth with the
    refresh token and ``application_token``; ``auth[domain]`` is the portal here."""
    auth_keys = (
        "access_token",
        "expires",
        "expires_in",
        "scope",
        "server_endpoint",
        "status",
        "client_endpoint",
        "member_id",
        "user_id",
        "refresh_token",
        "application_token",
    )
    auth = {key: answer[key] for key in auth_keys if key in answer}
    auth["domain"] = portal.domain
    return {
        "event": "ONAPPINSTALL",
        "data": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"},
        "ts": str(int(portal.clock.now())),
        "auth": auth,
    }
