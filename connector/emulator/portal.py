"""The state of one emulated portal (plan profiles and users: ``portal_profile``).

``Portal`` owns one of each part; each part lives in its own module and takes the portal
in its constructor so it can reach the clock and its siblings (typed as
``portal_contract.PortalContract``, so no part imports this module):

* ``crm``    — ``crm.CrmStore``            (entities, multi-fields, UF_CRM_*)
* ``events`` — ``events.EventHub``         (bindings; fires entity events into the queue)
* ``queue``  — ``offline_queue.OfflineQueue`` (the §7.12 state machine)
* ``pull``   — ``pull.PullHub``            (channels, messages, connections)
* ``limits`` — ``limits.Limits``           (leaky bucket, operating time, fault switches)

Importing this module registers the REST methods of those parts (``crm_methods``,
``crm_userfield_methods``, ``event_methods``, ``offline_methods``, ``pull_methods``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

# Importing the method modules registers their REST methods (they all bind the one
# name ``connector``, which ruff sees as used unless the last import says otherwise).
import connector.emulator.crm_methods
import connector.emulator.crm_userfield_methods
import connector.emulator.event_methods
import connector.emulator.offline_methods
import connector.emulator.pull_methods  # noqa: F401
from connector.emulator.clock import Clock
from connector.emulator.crm import CrmStore
from connector.emulator.events import EventHub
from connector.emulator.limits import Limits
from connector.emulator.offline_queue import OfflineQueue
from connector.emulator.portal_profile import PLANS, PlanProfile, User
from connector.emulator.pull import PullHub

__all__ = ["PLANS", "PlanProfile", "Portal", "User"]


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
        self.member_id = hashlib.md5(self.domain.encode()).hexdigest()
        self.crm = CrmStore(self)
        self.events = EventHub(self)
        self.queue = OfflineQueue(self)
        self.pull = PullHub(self)
        self.limits = Limits(self)

    def with_plan(self, name: str, **changes: object) -> None:
        """Switch the plan profile at run time (tests, ``--plan``)."""
        self.plan = replace(PLANS[name.lower()], **changes)  # type: ignore[arg-type]
