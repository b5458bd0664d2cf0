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
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx

from connector.emulator.context import CallContext
from connector.emulator.oauth import DEFAULT_SCOPES
from connector.emulator.params import build_query
from connector.emulator.portal import Portal, User

if TYPE_CHECKING:
    from connector.emulator.app import LogEntry, Webhook
    from connector.emulator.clock import Clock
    from connector.emulator.oauth import OAuthServer

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

ENTITIES = ("company", "contact", "lead", "deal")
_FIRST = (
    "Anna",
    "Boris",
    "Vera",
    "Gleb",
    "Daria",
    "Egor",
    "Zoya",
    "Ivan",
    "Kira",
    "Lev",
    "Maria",
    "Nikita",
    "Olga",
    "Pavel",
    "Rita",
    "Sergey",
    "Tanya",
    "Uliana",
)
_LAST = (
    "Ivanova",
    "Petrov",
    "Sidorova",
    "Kuznetsov",
    "Smirnova",
    "Popov",
    "Volkova",
    "Sokolov",
    "Lebedeva",
    "Kozlov",
    "Novikova",
    "Morozov",
)
_WORDS = (
    "Alpha",
    "Borealis",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orchid",
    "Pioneer",
)
_KINDS = ("LLC", "JSC", "Ltd", "Group", "Trade", "Logistics")


F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """Run a control operation under the emulator's lock: tests may call the Python API
    from their own thread while a :class:`~connector.emulator.server.ServerThread`
    serves requests."""

    @functools.wraps(fn)
    def wrapper(self: ControlAPI, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return fn(self, *args, **kwargs)

    return cast(F, wrapper)


class ControlAPI:
    """Test/demo operations; mixed into :class:`~connector.emulator.app.Emulator`."""

    clock: Clock
    oauth: OAuthServer
    portals: dict[str, Portal]
    log: deque[LogEntry]
    default_portal: Portal
    seed: int
    lock: threading.RLock
    form_sender: Callable[[str, str], None] | None = None
    """Delivers the portal's outgoing POSTs (``ONAPPINSTALL``, online event handlers) as
    (url, form body); ``None``: POST them over HTTP from a background thread."""
    delivery_delay: float = 0.0
    """Seconds to wait before such a POST (event handlers "can fire late", L1807)."""

    def portal(self, key: str | None = None) -> Portal:
        raise NotImplementedError

    def add_webhook(
        self,
        user_id: int = 1,
        *,
        secret: str | None = None,
        scopes: frozenset[str] | set[str] | None = None,
        portal: str | None = None,
    ) -> Webhook:
        raise NotImplementedError

    def finish_request(self, portal: Portal, ctx: CallContext) -> dict[str, dict[str, int]]:
        raise NotImplementedError

    def rest_base(self, portal: Portal, base_url: str) -> str:
        raise NotImplementedError

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

    # --- CRM data ----------------------------------------------------------------------------

    def ui_context(self, user_id: int = 1, *, portal: str | None = None) -> CallContext:
        """The context of a person working in the portal's UI (no app, no connector)."""
        target = self.portal(portal)
        user = target.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id} on {target.domain}")
        return CallContext(client_id=None, user_id=user.id, is_admin=user.is_admin)

    def _crm_call(
        self, target: Portal, ctx: CallContext, action: str, entity: str, *args: Any
    ) -> Any:
        entity = _entity(entity)
        handler = getattr(target.crm, action, None)
        if handler is None:
            raise RuntimeError(f"the CRM store has no {action}()")
        return handler(ctx, entity, *args)

    @locked
    def ui_add(
        self, entity: str, fields: dict[str, Any], *, user_id: int = 1, portal: str | None = None
    ) -> int:
        """Add an entity as a UI user; fires its events and the request-end push."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            new_id = self._crm_call(target, ctx, "add", entity, fields)
        finally:
            self.finish_request(target, ctx)
        return int(new_id)

    @locked
    def ui_update(
        self,
        entity: str,
        entity_id: int,
        fields: dict[str, Any],
        *,
        user_id: int = 1,
        portal: str | None = None,
    ) -> None:
        """Update an entity as a UI user."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            self._crm_call(target, ctx, "update", entity, int(entity_id), fields)
        finally:
            self.finish_request(target, ctx)

    @locked
    def ui_delete(
        self, entity: str, entity_id: int, *, user_id: int = 1, portal: str | None = None
    ) -> None:
        """Delete an entity as a UI user."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            self._crm_call(target, ctx, "delete", entity, int(entity_id))
        finally:
            self.finish_request(target, ctx)

    @locked
    def seed_crm(
        self,
        *,
        companies: int = 0,
        contacts: int = 0,
        leads: int = 0,
        deals: int = 0,
        seed: int | None = None,
        user_id: int = 1,
        portal: str | None = None,
    ) -> dict[str, list[int]]:
        """Create entities deterministically (same seed → same data), as a UI user.

        Returns the new IDs per entity. Contacts and deals link to seeded companies.
        """
        rng = random.Random(self.seed if seed is None else seed)
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        made: dict[str, list[int]] = {e: [] for e in ENTITIES}
        try:
            for fields in seed_records(rng, "company", companies, []):
                made["company"].append(int(self._crm_call(target, ctx, "add", "company", fields)))
            for entity, count in (("contact", contacts), ("lead", leads), ("deal", deals)):
                for fields in seed_records(rng, entity, count, made["company"]):
                    made[entity].append(int(self._crm_call(target, ctx, "add", entity, fields)))
        finally:
            self.finish_request(target, ctx)
        return made

    # --- plan, limits, faults -----------------------------------------------------------------

    @locked
    def set_plan(self, name: str, *, portal: str | None = None, **changes: Any) -> None:
        self.portal(portal).with_plan(name, **changes)

    @locked
    def set_limits(
        self,
        *,
        rate: float | None = None,
        burst: int | None = None,
        enabled: bool | None = None,
        operating_limit: float | None = None,
        costs: dict[str, float | None] | None = None,
        operating_scope: str | None = None,
        reset: bool = False,
        portal: str | None = None,
    ) -> dict[str, Any]:
        """Override the plan's limiter, set simulated method costs (seconds per call),
        choose whose operating time adds up (``"caller"``/``"portal"``), empty the bucket."""
        limits = self.portal(portal).limits
        limits.configure(rate=rate, burst=burst, enabled=enabled, operating_limit=operating_limit)
        if operating_scope is not None:
            if operating_scope not in ("caller", "portal"):
                raise ValueError("operating_scope is 'caller' or 'portal'")
            limits.operating_scope = operating_scope
        for method, seconds in (costs or {}).items():
            limits.set_cost(method, seconds)
        if reset:
            limits.reset()
        return limits.snapshot()

    @locked
    def set_faults(
        self,
        *,
        overload: bool | None = None,
        overload_status: int | None = None,
        fail_next: int | None = None,
        fail_methods: dict[str, int | None] | None = None,
        block_methods: dict[str, bool] | None = None,
        delay: float | None = None,
        method_delays: dict[str, float] | None = None,
        portal: str | None = None,
    ) -> dict[str, Any]:
        """Switch faults on or off; unnamed switches keep their state."""
        limits = self.portal(portal).limits
        faults = limits.faults
        if overload is not None:
            faults.overload = overload
        if overload_status is not None:
            faults.overload_status = int(overload_status)
        if fail_next is not None:
            faults.fail_next = int(fail_next)
        for method, times in (fail_methods or {}).items():
            limits.fail_method(method, times)
        for method, blocked in (block_methods or {}).items():
            limits.block_method(method, blocked)
        if delay is not None:
            faults.delay = float(delay)
        for method, seconds in (method_delays or {}).items():
            faults.method_delays[method.lower()] = float(seconds)
        return limits.snapshot()

    @locked
    def clear_faults(self, *, portal: str | None = None) -> None:
        self.portal(portal).limits.faults.clear()

    # --- observation ---------------------------------------------------------------------------

    @locked
    def requests(
        self, method: str | None = None, *, portal: str | None = None, since: int = 0
    ) -> list[LogEntry]:
        """Request log entries (optionally one method's, one portal's, after ``since``)."""
        member_id = self.portal(portal).member_id if portal is not None else None
        return [
            e
            for e in self.log
            if e.seq > since
            and (method is None or e.method == method.lower())
            and (member_id is None or e.portal == member_id)
        ]

    @locked
    def clear_log(self) -> None:
        self.log.clear()

    @locked
    @locked
    def queue_raw(
        self,
        client_id: str,
        connector_id: str,
        event_name: str,
        event_data: Any,
        *,
        user_id: int = 1,
        portal: str | None = None,
    ) -> int:
        """Put a record into the offline queue as given: a malformed or strange payload
        (``EVENT_DATA`` false, a string, no ``FIELDS``; an unknown event name; the ID of
        a deleted record) that no CRM action here would produce. Returns its queue ID."""
        target = self.portal(portal)
        return int(target.queue.upsert(client_id, connector_id, event_name, event_data, user_id).id)

    def queue_state(self, *, portal: str | None = None) -> list[dict[str, Any]]:
        """Every offline-queue record with its partition, lock and error flag."""
        target = self.portal(portal)
        queue = target.queue
        records = getattr(queue, "records", None)
        render = getattr(queue, "render", None)
        if records is None or render is None:
            return []
        rows = []
        for record in records():
            row = dict(render(record, full=True))
            row["APP_ID"] = record.app_id
            row["CONNECTOR_ID"] = record.connector_id
            rows.append(row)
        return rows

    def advance(self, seconds: float) -> float:
        """Move the test clock (all portals, OAuth) forward; returns the new time."""
        self.clock.advance(float(seconds))
        return self.clock.now()

    @locked
    def pull_command(
        self,
        command: str,
        *,
        client_id: str | None = None,
        portal: str | None = None,
        **options: Any,
    ) -> Any:
        """Delegate to the portal's Push&Pull hub: ``channel_expire``, ``config_expire``,
        ``server_restart``, ``drop``, ``refuse_websocket``, ``allow_websocket``,
        ``stall``, ``expire_channels``."""
        pull = self.portal(portal).pull
        if command == "channel_expire":
            if client_id is None:
                raise ValueError("channel_expire needs client_id")
            return pull.send_channel_expire(client_id, **options)
        if command == "config_expire":
            return pull.send_config_expire(client_id)
        if command == "server_restart":
            return pull.send_server_restart(client_id, **options)
        if command == "drop":
            return pull.drop_connections(client_id=client_id, **options)
        if command == "refuse_websocket":
            return pull.refuse_websocket(**options)
        if command == "allow_websocket":
            return pull.allow_websocket()
        if command == "stall":
            return pull.set_stall(options.get("mode"))
        if command == "expire_channels":
            return pull.expire_channels(**options)
        raise ValueError(f"unknown pull command {command!r}")

    @locked
    def state(self) -> dict[str, Any]:
        """A JSON-ready overview: portals, apps (no secrets), limits, faults, pull."""
        portals = []
        for p in self.portals.values():
            snapshot = getattr(p.pull, "snapshot", None)
            portals.append(
                {
                    "member_id": p.member_id,
                    "domain": p.domain,
                    "default": p is self.default_portal,
                    "plan": p.plan.name,
                    "limits": p.limits.snapshot(),
                    "queue_size": len(self.queue_state(portal=p.member_id)),
                    "pull": snapshot() if snapshot is not None else None,
                }
            )
        apps = [
            {"client_id": a.client_id, "scopes": list(a.scopes), "status": a.status}
            for a in self.oauth.apps.values()
        ]
        return {
            "time": self.clock.now(),
            "portals": portals,
            "apps": apps,
            "access_ttl": self.oauth.access_ttl,
            "requests": len(self.log),
        }


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


def _entity(name: str) -> str:
    entity = name.lower().removeprefix("crm.")
    if entity not in ENTITIES:
        raise ValueError(f"unknown CRM entity {name!r}; use one of {', '.join(ENTITIES)}")
    return entity


def seed_records(
    rng: random.Random, entity: str, count: int, company_ids: list[int]
) -> list[dict[str, Any]]:
    """``count`` field sets for ``entity``, drawn from ``rng`` (deterministic)."""
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        phone = f"+7 9{rng.randrange(10**8, 10**9):09d}"
        email = f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.test"
        multi = {
            "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}],
            "EMAIL": [{"VALUE": email, "VALUE_TYPE": "WORK"}],
        }
        company = rng.choice(company_ids) if company_ids else None
        if entity == "company":
            title = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_KINDS)}"
            rows.append(
                {
                    "TITLE": title,
                    "COMPANY_TYPE": "CUSTOMER",
                    "COMMENTS": f"Seeded #{rng.randrange(10**6)}",
                    **multi,
                }
            )
        elif entity == "contact":
            row: dict[str, Any] = {"NAME": first, "LAST_NAME": last, **multi}
            if company is not None:
                row["COMPANY_ID"] = company
            rows.append(row)
        elif entity == "lead":
            rows.append(
                {
                    "TITLE": f"Lead from {first} {last}",
                    "NAME": first,
                    "LAST_NAME": last,
                    "STATUS_ID": "NEW",
                    **multi,
                }
            )
        else:
            deal: dict[str, Any] = {
                "TITLE": f"Deal {rng.choice(_WORDS)}",
                "STAGE_ID": "NEW",
                "OPPORTUNITY": rng.randrange(1, 1000) * 100,
                "CURRENCY_ID": "USD",
            }
            if company is not None:
                deal["COMPANY_ID"] = company
            rows.append(deal)
    return rows
