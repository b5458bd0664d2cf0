"""Per-method operating-time accounting (the portal's "resource" limit).

The portal sums each method's execution time over ten one-minute baskets; past the
limit (480 s in 10 min on the cloud) the method answers 429 ``OPERATION_TIME_LIMIT``
until ``operating_reset_at``. Every answer reports ``time.operating`` and
``time.operating_reset_at`` for the method called; a ``batch`` is billed to ``batch``
itself, so callers account it under that name.

:class:`OperatingBudget` remembers the last figures per method and says until when a
method must rest: after a limit answer, and — to avoid the answer altogether — as soon
as a method has spent ``safety`` of the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.core.portal_answers import DEFAULT_OPERATING_WAIT_S, OperatingTime

__all__ = ["OperatingBudget"]


@dataclass
class OperatingBudget:
    """Operating time seen per method, and per-method pauses (all times unix seconds)."""

    limit_s: float = 480.0
    safety: float = 0.9
    seen: dict[str, OperatingTime] = field(default_factory=dict)
    paused_until: dict[str, float] = field(default_factory=dict)

    def observe(self, method: str, spent: OperatingTime, now: float) -> None:
        """Record a successful answer's figures; pause the method if it is near the limit."""
        if spent.operating is None and spent.reset_at is None:
            return
        self.seen[method] = spent
        if spent.operating is not None and spent.operating >= self.limit_s * self.safety:
            until = spent.reset_at if spent.reset_at is not None else now + DEFAULT_OPERATING_WAIT_S
            self.pause(method, until)

    def pause(self, method: str, until: float) -> None:
        """Rest ``method`` until ``until`` (a later pause wins over an earlier one)."""
        self.paused_until[method] = max(until, self.paused_until.get(method, 0.0))

    def wait_for(self, method: str, now: float) -> float:
        """Seconds ``method`` must still rest (0 when it may be called)."""
        until = self.paused_until.get(method)
        if until is None:
            return 0.0
        if until <= now:
            del self.paused_until[method]
            return 0.0
        return until - now

    def known_reset_at(self, method: str) -> float | None:
        """The last ``operating_reset_at`` seen for ``method``, if any."""
        spent = self.seen.get(method)
        return spent.reset_at if spent else None
