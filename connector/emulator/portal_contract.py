"""What a part of a portal may rely on from its portal, as ``Protocol`` types.

``CrmStore``, ``EventHub``, ``OfflineQueue``, ``PullHub`` and ``Limits`` each take their
portal in the constructor. They type it as :class:`PortalContract` — the portal's
identity, clock, plan and users, and the few sibling operations a part calls — instead
of importing :class:`~connector.emulator.portal.Portal`, which builds them (that would be
an import circle). ``Portal`` satisfies the protocol structurally.

* :class:`EventSink` — ``portal.events`` as ``CrmStore`` and ``event_access`` use it;
* :class:`QueueSink` — ``portal.queue`` as ``EventHub`` uses it;
* :class:`OfflineNotifier` — ``portal.pull`` as ``CrmStore`` uses it.

The REST handlers see the whole portal, every part with its concrete type:
``portal_view.PortalView``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from connector.emulator.clock import Clock
    from connector.emulator.context import CallContext
    from connector.emulator.portal_profile import PlanProfile, User


class EventSink(Protocol):
    """Where entity events go (``portal.events``)."""

    @property
    def auth_connector_policy(self) -> str:
        """``"ignore"`` or ``"error"``: an unlicensed ``auth_connector`` (digest A1)."""
        ...

    def fire(
        self, ctx: CallContext, event_name: str, data: Any, user_id: int | None = None
    ) -> None: ...

    def finish_request(self, ctx: CallContext) -> dict[str, dict[str, int]]: ...


class QueueSink(Protocol):
    """Where offline firings are queued (``portal.queue``)."""

    def upsert(
        self, app_id: str, connector_id: str, event_name: str, event_data: Any, user_id: int
    ) -> object: ...


class OfflineNotifier(Protocol):
    """Who pushes ``event_offline`` to the apps (``portal.pull``)."""

    def notify_offline(self, client_id: str, counts: dict[str, int]) -> None: ...


class PortalContract(Protocol):
    """One portal as its parts see it (read-only)."""

    @property
    def domain(self) -> str: ...

    @property
    def member_id(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def plan(self) -> PlanProfile: ...

    @property
    def users(self) -> dict[int, User]: ...

    @property
    def events(self) -> EventSink: ...

    @property
    def queue(self) -> QueueSink: ...

    @property
    def pull(self) -> OfflineNotifier: ...
