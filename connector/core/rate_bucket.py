"""The portal's leaky bucket, mirrored on the client so the portal never has to say no.

The portal keeps one counter per portal (and calling IP): each request adds 1, the
counter drains ``rate`` per second, and a request that takes it past ``burst`` is
answered 503 ``QUERY_LIMIT_EXCEEDED``. Plans: 2/s with burst 50, Enterprise 5/s with
burst 250 (digest §3).

The client keeps the same counter (a :class:`BucketState`) but stops at a lower
``cap`` (burst minus headroom, because other apps on the same IP share the portal's
bucket). :func:`reserve` books a slot and says how long to wait before sending; booking
before waiting means concurrent callers get staggered waits and need no lock beyond
the one protecting the state (GCRA, "virtual scheduling"). After any limit answer,
:func:`penalize` assumes the portal's bucket is full and slows down for a while
(adaptive slow-down): a lower rate, a lower cap.

All functions are pure: time comes in as ``now`` (seconds), state goes out as a value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "ENTERPRISE",
    "PROFILES",
    "STANDARD",
    "BucketProfile",
    "BucketState",
    "level_at",
    "penalize",
    "profile_for",
    "reserve",
]


@dataclass(frozen=True)
class BucketProfile:
    """The portal's bucket (``rate`` per second, ``burst`` requests) and our margins.

    ``headroom`` is the share of ``burst`` we never use; ``slowdown_s`` how long a limit
    answer slows us down; ``slow_rate_factor`` and ``slow_cap_factor`` how much.
    """

    rate: float = 2.0
    burst: int = 50
    headroom: float = 0.2
    slowdown_s: float = 30.0
    slow_rate_factor: float = 0.5
    slow_cap_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if not 0 <= self.headroom < 1:
            raise ValueError("headroom must be in [0, 1)")

    @property
    def cap(self) -> float:
        """The highest level we let the bucket reach (at least 1)."""
        return max(1.0, float(int(self.burst * (1 - self.headroom))))

    def effective(self, slowed: bool) -> tuple[float, float]:
        """``(rate, cap)`` in force, normal or slowed down."""
        if not slowed:
            return self.rate, self.cap
        return self.rate * self.slow_rate_factor, max(
            1.0, float(int(self.cap * self.slow_cap_factor))
        )


STANDARD = BucketProfile(rate=2.0, burst=50)
ENTERPRISE = BucketProfile(rate=5.0, burst=250)
PROFILES = {"standard": STANDARD, "enterprise": ENTERPRISE}


def profile_for(
    plan: str | None = None, *, rate: float | None = None, burst: int | None = None
) -> BucketProfile:
    """The profile for a plan name (``enterprise``; anything else is standard), with
    ``rate``/``burst`` overriding it when given (``B24_RATE_LIMIT``/``B24_RATE_BURST``)."""
    base = PROFILES.get((plan or "standard").lower(), STANDARD)
    changes: dict[str, float | int] = {}
    if rate is not None:
        changes["rate"] = rate
    if burst is not None:
        changes["burst"] = burst
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


@dataclass(frozen=True)
class BucketState:
    """Our view of the bucket: ``level`` at time ``updated_at``; slowed until ``slowdown_until``."""

    level: float = 0.0
    updated_at: float = 0.0
    slowdown_until: float = 0.0


def level_at(state: BucketState, now: float, profile: BucketProfile) -> float:
    """The level after draining from ``state.updated_at`` to ``now`` (never below 0)."""
    rate, _ = profile.effective(now < state.slowdown_until)
    elapsed = max(0.0, now - state.updated_at)
    return max(0.0, state.level - elapsed * rate)


def reserve(
    state: BucketState, now: float, profile: BucketProfile, cost: float = 1.0
) -> tuple[BucketState, float]:
    """Book ``cost`` requests; return the new state and the seconds to wait before sending.

    The booked level may exceed the cap: it counts requests already booked but not yet
    sent, each of which waits until the drain makes room for it.
    """
    rate, cap = profile.effective(now < state.slowdown_until)
    level = level_at(state, now, profile) + cost
    wait = max(0.0, (level - cap) / rate)
    return replace(state, level=level, updated_at=max(now, state.updated_at)), wait


def penalize(state: BucketState, now: float, profile: BucketProfile) -> BucketState:
    """The portal said "too many": take its bucket as full and slow down for a while."""
    level = max(level_at(state, now, profile), float(profile.burst))
    until = max(state.slowdown_until, now + profile.slowdown_s)
    return BucketState(level=level, updated_at=max(now, state.updated_at), slowdown_until=until)
