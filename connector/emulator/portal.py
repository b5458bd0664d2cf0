"""The state of one emulated portal, and the plan profiles that gate features.

``Portal`` owns one of each part; each part lives in its own module and takes the portal
in its constructor so it can reach the clock and its siblings:

* ``crm``    — ``crm.CrmStore``            (entities, multi-fields, UF_CRM_*)
* ``events`` — ``events.EventHub``         (bindings; fires entity events into the queue)
* ``queue``  — ``offline_queue.OfflineQueue`` (the §7.12 state machine)
* ``pull``   — ``pull.PullHub``            (channels, messages, connections)
* ``limits`` — ``limits.Limits``           (leaky bucket, operating time, fault switches)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from connector.emulator.clock import Clock


@dataclass(frozen=True)
class PlanProfile:
    """What a tariff allows. Plan names are data, not code (digest A17)."""

    name: str
    offline_events: bool = True
    auth_connector: bool = True
    extended_queue: bool = True
    rate_burst: int = 50
    rate_limit: float = 2.0


PLANS: dict[str, PlanProfile] = {
    "basic": PlanProfile("basic", auth_connector=False, extended_queue=False),
    "standard": PlanProfile("standard", auth_connector=False, extended_queue=False),
    "professional": PlanProfile("professional"),
    "pro": PlanProfile("pro"),
    "nfr": PlanProfile("nfr"),
    "enterprise": PlanProfile("enterprise", rate_burst=250, rate_limit=5.0),
}


@dataclass
class User:
    id: int
    name: str
    is_admin: bool = False


@dataclass
class Portal:
    """One portal. ``member_id`` is the tenant key; ``domain`` its host name."""

    domain: str = "emulator.bitrix24.test"
    plan: PlanProfile = field(default_factory=lambda: PLANS["pro"])
    clock: Clock = field(default_factory=Clock)
    users: dict[int, User] = field(
        default_factory=lambda: {
            1: User(1, "Admin", is_admin=True),
            2: User(2, "Manager", is_admin=False),
        }
    )

    def __post_init__(self) -> None:
        from connector.emulator.crm import CrmStore
        from connector.emulator.events import EventHub
        from connector.emulator.limits import Limits
        from connector.emulator.offline_queue import OfflineQueue
        from connector.emulator.pull import PullHub

        self.member_id = hashlib.md5(self.domain.encode()).hexdigest()
        self.crm = CrmStore(self)
        self.events = EventHub(self)
        self.queue = OfflineQueue(self)
        self.pull = PullHub(self)
        self.limits = Limits(self)

    def with_plan(self, name: str, **changes: object) -> None:
        """Switch the plan profile at run time (tests, ``--plan``)."""
        self.plan = replace(PLANS[name.lower()], **changes)  # type: ignore[arg-type]
