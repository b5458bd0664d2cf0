"""What describes a portal apart from its parts: the plan profiles that gate features
(tariffs as data, digest A17) and the portal's users.

A leaf module: the portal's parts and the REST handlers read these types through
``portal_contract`` / ``portal_view`` without importing ``portal``.
"""

from __future__ import annotations

from dataclasses import dataclass


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
