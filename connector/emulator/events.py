"""Event bindings and firing (the ``event.*`` REST methods are in ``event_methods``).

:class:`EventHub` keeps every app's bindings and turns fired entity events into work:

* **offline bindings** — :meth:`EventHub.fire` queues the firing at once (the rest
  module queues during the request) into ``portal.queue`` for each matching offline
  binding, *unless* the request comes from the binding's own app **and** carries the
  binding's connector (digest §7.3, A4). Each queued firing (merges included) counts in
  ``ctx.queued[(app, connector)]``.
* **online bindings** — each firing becomes a :class:`Delivery` in
  :attr:`EventHub.deliveries` (the handler call Bitrix would make: ``event``, ``data``,
  ``ts``, the auth user). If :attr:`EventHub.sender` is set it is called with each
  delivery; it must not block (schedule the HTTP POST, do not await it).
* **onOfflineEvent** — at :meth:`EventHub.finish_request`, every app that got queued
  firings in that request gets one ``ONOFFLINEEVENT`` delivery per online binding,
  throttled by ``options[minTimeout]`` (seconds, default 1; ``0`` = one per request).
  A throttled notification is kept pending and sent by the next request or
  :meth:`EventHub.flush_notifications` after the window (portal clock).

:meth:`EventHub.finish_request` is what the HTTP app calls at the end of every request:
it returns ``{client_id: {connector_id: count}}`` for ``portal.pull.notify_offline``
and resets ``ctx.queued``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from connector.emulator.context import Firing
from connector.emulator.event_access import (
    effective_connector,
)
from connector.emulator.offline_queue import php_int
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_contract import PortalContract

CRM_ENTITIES = ("LEAD", "CONTACT", "COMPANY", "DEAL")
OFFLINE_EVENT = "ONOFFLINEEVENT"


@dataclass(frozen=True)
class EventInfo:
    """What the portal knows about one bindable event."""

    name: str
    scope: str = ""
    disable_offline: bool = False
    int_options: tuple[str, ...] = ()


def _catalog() -> dict[str, EventInfo]:
    infos = [
        EventInfo(f"ONCRM{entity}{action}", "crm")
        for entity in CRM_ENTITIES
        for action in ("ADD", "UPDATE", "DELETE")
    ]
    infos += [
        EventInfo(f"ONCRM{entity}USERFIELD{action}", "crm")
        for entity in CRM_ENTITIES
        for action in ("ADD", "UPDATE", "DELETE")
    ]
    infos += [
        EventInfo(name)
        for name in ("ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT")
    ]
    infos.append(EventInfo(OFFLINE_EVENT, disable_offline=True, int_options=("minTimeout",)))
    return {info.name: info for info in infos}


EVENT_CATALOG = _catalog()
"""Every event ``event.bind`` accepts, by upper-case name."""


@dataclass
class Binding:
    """One row of ``b_rest_event``. ``handler == ""`` means an offline binding."""

    id: int
    app_id: str
    event: str
    handler: str
    user_id: int
    connector_id: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        return self.handler == ""

    def describe(self) -> dict[str, Any]:
        """The ``event.get`` element (§7.2); the stored connector is reported (A3)."""
        if self.offline:
            return {"event": self.event, "connector_id": self.connector_id, "offline": 1}
        return {
            "event": self.event,
            "handler": self.handler,
            "auth_type": str(self.user_id),
            "offline": 0,
        }


@dataclass
class Delivery:
    """A handler call the portal makes: form fields ``event``, ``data``, ``ts``, ``auth``."""

    event: str
    handler: str
    app_id: str
    data: Any
    ts: int
    user_id: int
    binding_id: int


@dataclass
class _Throttle:
    last_sent: float | None = None
    pending: bool = False


class EventHub:
    """Bindings of all apps of one portal, and what firing an event does.

    ``auth_connector_policy``: on a plan without ``auth_connector``, ``"ignore"`` the key
    (default) or answer 403 ``WRONG_LICENSE`` (``"error"``) — digest A1.
    """

    def __init__(self, portal: PortalContract) -> None:
        self.portal = portal
        self.bindings: dict[int, Binding] = {}
        self.deliveries: list[Delivery] = []
        self.sender: Callable[[Delivery], None] | None = None
        self.auth_connector_policy: Literal["ignore", "error"] = "ignore"
        self._next_id = 1
        self._throttle: dict[int, _Throttle] = {}

    # ---- bindings (Python API) ---------------------------------------------------
    def bind(
        self,
        app_id: str,
        event: str,
        *,
        handler: str = "",
        connector_id: str = "",
        user_id: int = 0,
        options: dict[str, Any] | None = None,
    ) -> Binding:
        """Add a binding (``handler=""`` → offline); a duplicate raises ``ERROR_CORE``."""
        name = event.upper()
        for existing in self.bindings.values():
            if (
                existing.app_id,
                existing.event,
                existing.handler,
                existing.connector_id,
                existing.user_id,
            ) == (app_id, name, handler, connector_id, user_id):
                raise RestError(
                    "ERROR_CORE", "Unable to set event handler: Handler already binded", 400
                )
        binding = Binding(
            self._next_id, app_id, name, handler, user_id, connector_id, dict(options or {})
        )
        self._next_id += 1
        self.bindings[binding.id] = binding
        return binding

    def unbind(
        self,
        app_id: str,
        event: str,
        *,
        handler: str = "",
        connector_id: str | None = None,
        user_id: int | None = None,
    ) -> int:
        """Remove matching bindings; ``None`` for connector/user means "any"."""
        name = event.upper()
        doomed = [
            b
            for b in self.bindings.values()
            if b.app_id == app_id
            and b.event == name
            and b.handler == handler
            and (connector_id is None or b.connector_id == connector_id)
            and (user_id is None or b.user_id == user_id)
        ]
        for binding in doomed:
            del self.bindings[binding.id]
            self._throttle.pop(binding.id, None)
        return len(doomed)

    def bindings_of(self, app_id: str) -> list[Binding]:
        return [b for _, b in sorted(self.bindings.items()) if b.app_id == app_id]

    def remove_app(self, app_id: str) -> int:
        """An app deleted or updated loses every binding (rebind in each installer)."""
        doomed = [b.id for b in self.bindings.values() if b.app_id == app_id]
        for binding_id in doomed:
            del self.bindings[binding_id]
            self._throttle.pop(binding_id, None)
        return len(doomed)

    # ---- firing --------------------------------------------------------------------
    def fire(
        self, ctx: CallContext, event_name: str, data: Any, user_id: int | None = None
    ) -> None:
        """An entity event happened during ``ctx``'s request (or UI action)."""
        name = event_name.upper()
        user = ctx.user_id if user_id is None else user_id
        ctx.firings.append(Firing(name, data, user))
        request_connector = effective_connector(self.portal, ctx, strict=False)
        now = int(self.portal.clock.now())
        for binding in list(self.bindings.values()):
            if binding.event != name:
                continue
            if binding.offline:
                if not self.portal.plan.offline_events:
                    continue
                if ctx.client_id == binding.app_id and request_connector == binding.connector_id:
                    continue
                self.portal.queue.upsert(binding.app_id, binding.connector_id, name, data, user)
                key = (binding.app_id, binding.connector_id)
                ctx.queued[key] = ctx.queued.get(key, 0) + 1
            else:
                self._deliver(
                    Delivery(
                        name,
                        binding.handler,
                        binding.app_id,
                        data,
                        now,
                        binding.user_id or user,
                        binding.id,
                    )
                )

    def _deliver(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self.sender is not None:
            self.sender(delivery)

    def finish_request(self, ctx: CallContext) -> dict[str, dict[str, int]]:
        """End of a request: ``{client_id: {connector_id: firings queued}}``.

        Resets ``ctx.queued`` (so calling it twice does not double-count) and sends the
        ``onOfflineEvent`` notifications the request earned.
        """
        counts: dict[str, dict[str, int]] = {}
        for (app_id, connector_id), count in ctx.queued.items():
            if count > 0:
                counts.setdefault(app_id, {})[connector_id] = count
        ctx.queued.clear()
        self.flush_notifications()
        for binding in list(self.bindings.values()):
            if binding.event != OFFLINE_EVENT or binding.offline or binding.app_id not in counts:
                continue
            self._notify(binding, force=False)
        return counts

    def _min_timeout(self, binding: Binding) -> int:
        return php_int(binding.options.get("minTimeout"), 1)

    def _notify(self, binding: Binding, *, force: bool) -> bool:
        state = self._throttle.setdefault(binding.id, _Throttle())
        now = self.portal.clock.now()
        timeout = self._min_timeout(binding)
        if force or timeout <= 0 or state.last_sent is None or now - state.last_sent >= timeout:
            state.last_sent = now
            state.pending = False
            self._deliver(
                Delivery(
                    OFFLINE_EVENT,
                    binding.handler,
                    binding.app_id,
                    [],
                    int(now),
                    binding.user_id,
                    binding.id,
                )
            )
            return True
        state.pending = True
        return False

    def flush_notifications(self) -> int:
        """Send throttled ``onOfflineEvent`` notifications whose window has passed."""
        sent = 0
        now = self.portal.clock.now()
        for binding_id, state in list(self._throttle.items()):
            binding = self.bindings.get(binding_id)
            if binding is None or not state.pending or state.last_sent is None:
                continue
            if now - state.last_sent >= self._min_timeout(binding):
                sent += self._notify(binding, force=True)
        return sent

    def notifications(self, app_id: str | None = None) -> list[Delivery]:
        """The ``onOfflineEvent`` deliveries so far (optionally one app's)."""
        return [
            d
            for d in self.deliveries
            if d.event == OFFLINE_EVENT and (app_id is None or d.app_id == app_id)
        ]
