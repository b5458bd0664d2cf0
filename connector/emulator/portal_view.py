"""``PortalView``: one portal as a REST method handler sees it.

Every part carries its concrete type (``crm.CrmStore``, ``events.EventHub``,
``offline_queue.OfflineQueue``, ``pull.PullHub``, ``limits.Limits``), so handlers are
fully typed without importing :class:`~connector.emulator.portal.Portal` (which imports
the method modules to register them). ``Portal`` satisfies the protocol structurally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from connector.emulator.portal_contract import PortalContract

if TYPE_CHECKING:
    from connector.emulator.crm import CrmStore
    from connector.emulator.events import EventHub
    from connector.emulator.limits import Limits
    from connector.emulator.offline_queue import OfflineQueue
    from connector.emulator.pull import PullHub


class PortalView(PortalContract, Protocol):
    """A portal with all of its parts (read-only)."""

    @property
    def crm(self) -> CrmStore: ...

    @property
    def events(self) -> EventHub: ...

    @property
    def queue(self) -> OfflineQueue: ...

    @property
    def pull(self) -> PullHub: ...

    @property
    def limits(self) -> Limits: ...
