"""Rate limits, operating-time accounting and fault switches of one portal.

* **Leaky bucket** (digest §3.2): each accepted request adds 1; the counter drains by
  ``rate`` per second; a request that would lift it above ``burst`` gets 503
  ``QUERY_LIMIT_EXCEEDED`` "Too many requests" and is not executed (and not counted).
  ``burst``/``rate`` come from the portal's plan unless overridden at run time. A
  ``batch`` is one request.
* **Operating time** (ecosystem §1.13): the execution time of each method is summed per
  caller (app or webhook; ``operating_scope="portal"`` sums over all callers, the 2024
  wording) in ten one-minute baskets; above ``operating_limit`` (480 s) within 10
  minutes the next call of that method gets 429 ``OPERATION_TIME_LIMIT``.
  ``set_cost`` makes a method's simulated execution time large so tests can reach it;
  ``operating_window`` shrinks the ten minutes (its baskets a tenth of it each) so a
  test on the real clock sees the block lift in seconds.
* **Faults** switched on at run time: ``OVERLOAD_LIMIT`` (503 per the seed, L2653),
  500 ``INTERNAL_SERVER_ERROR`` on chosen methods or the next N calls, forced 429s,
  and slow replies (an ``asyncio`` delay).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.portal_contract import PortalContract

OPERATING_LIMIT = 480.0
OPERATING_WINDOW = 600.0
BASKET = 60.0

sleep = asyncio.sleep
"""How slow replies wait (a module attribute so tests can watch the delays)."""


@dataclass
class Faults:
    """Fault-injection switches; every field may be changed while the server runs."""

    overload: bool = False
    overload_status: int = 503
    fail_next: int = 0
    fail_methods: dict[str, int | None] = field(default_factory=dict)
    block_methods: set[str] = field(default_factory=set)
    delay: float = 0.0
    method_delays: dict[str, float] = field(default_factory=dict)

    def clear(self) -> None:
        self.overload = False
        self.overload_status = 503
        self.fail_next = 0
        self.fail_methods.clear()
        self.block_methods.clear()
        self.delay = 0.0
        self.method_delays.clear()


class Limits:
    """The limiter and fault switches of one portal (``portal.limits``)."""

    def __init__(self, portal: PortalContract) -> None:
        self.portal = portal
        self.rate_override: float | None = None
        self.burst_override: int | None = None
        self.enabled = True
        self.operating_limit = OPERATING_LIMIT
        self.operating_window = OPERATING_WINDOW
        self.operating_scope = "caller"
        self.faults = Faults()
        self._level = 0.0
        self._last: float | None = None
        self._costs: dict[str, float] = {}
        self._baskets: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self.accepted = 0
        self.rejected = 0

    # --- configuration -----------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self.rate_override if self.rate_override is not None else self.portal.plan.rate_limit

    @property
    def burst(self) -> int:
        return (
            self.burst_override if self.burst_override is not None else self.portal.plan.rate_burst
        )

    def configure(
        self,
        *,
        rate: float | None = None,
        burst: int | None = None,
        enabled: bool | None = None,
        operating_limit: float | None = None,
        operating_window: float | None = None,
    ) -> None:
        """Override the plan's rate/burst and the operating-time budget (``None`` leaves
        a value as it is)."""
        if rate is not None:
            self.rate_override = float(rate)
        if burst is not None:
            self.burst_override = int(burst)
        if enabled is not None:
            self.enabled = enabled
        if operating_limit is not None:
            self.operating_limit = float(operating_limit)
        if operating_window is not None:
            if operating_window <= 0:
                raise ValueError("operating_window is a number of seconds above 0")
            self.operating_window = float(operating_window)

    def reset(self) -> None:
        """Empty the bucket and forget operating time (not the configuration)."""
        self._level = 0.0
        self._last = None
        self._baskets.clear()

    def set_cost(self, method: str, seconds: float | None) -> None:
        """Bill each call of ``method`` as ``seconds`` of execution (``None``: real time)."""
        if seconds is None:
            self._costs.pop(method.lower(), None)
        else:
            self._costs[method.lower()] = float(seconds)

    # --- leaky bucket ----------------------------------------------------------------

    def level(self) -> float:
        """The bucket's current level after draining up to now."""
        self._drain(self.portal.clock.now())
        return self._level

    def _drain(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._level = max(0.0, self._level - (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def admit(self) -> bool:
        """Count one request; ``False`` means it must get 503 ``QUERY_LIMIT_EXCEEDED``."""
        if not self.enabled:
            self.accepted += 1
            return True
        self._drain(self.portal.clock.now())
        if self._level + 1.0 > self.burst:
            self.rejected += 1
            return False
        self._level += 1.0
        self.accepted += 1
        return True

    @staticmethod
    def query_limit_error() -> RestError:
        return RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)

    # --- operating time -----------------------------------------------------------------

    def _window(self, caller: str, method: str, now: float) -> deque[tuple[float, float]]:
        owner = "*" if self.operating_scope == "portal" else caller
        baskets = self._baskets.setdefault((owner, method.lower()), deque())
        while baskets and baskets[0][0] + self.operating_window <= now:
            baskets.popleft()
        return baskets

    def operating(self, caller: str, method: str) -> tuple[float, int]:
        """(summed seconds in the window, unix time the oldest basket drops out)."""
        now = self.portal.clock.now()
        baskets = self._window(caller, method, now)
        total = sum(seconds for _, seconds in baskets)
        window = self.operating_window
        reset_at = baskets[0][0] + window if baskets else now + window
        return total, int(reset_at)

    def check_operating(self, caller: str, method: str) -> None:
        """Raise 429 ``OPERATION_TIME_LIMIT`` if the method is over its budget or blocked."""
        total, reset_at = self.operating(caller, method)
        if method.lower() in self.faults.block_methods or total > self.operating_limit:
            raise RestError(
                "OPERATION_TIME_LIMIT",
                "Method is blocked due to operation time limit.",
                429,
                extra={"time": {"operating": round(total, 4), "operating_reset_at": reset_at}},
            )

    def bill(self, caller: str, method: str, processing: float) -> tuple[float, int]:
        """Add one call's execution time (or the simulated cost) to the method's baskets."""
        now = self.portal.clock.now()
        cost = self._costs.get(method.lower(), processing)
        baskets = self._window(caller, method, now)
        if baskets and now - baskets[-1][0] < BASKET * self.operating_window / OPERATING_WINDOW:
            start, seconds = baskets[-1]
            baskets[-1] = (start, seconds + cost)
        else:
            baskets.append((now, cost))
        return self.operating(caller, method)

    # --- faults ------------------------------------------------------------------------

    def check_overload(self) -> None:
        if self.faults.overload:
            raise RestError(
                "OVERLOAD_LIMIT",
                "REST API is blocked due to overload.",
                self.faults.overload_status,
            )

    def check_failure(self, method: str) -> None:
        """A 500 if the next-N counter or the method's switch says so (consumes one)."""
        name = method.lower()
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            raise _internal_error()
        if name in self.faults.fail_methods:
            remaining = self.faults.fail_methods[name]
            if remaining is not None:
                if remaining <= 1:
                    del self.faults.fail_methods[name]
                else:
                    self.faults.fail_methods[name] = remaining - 1
            raise _internal_error()

    def fail_method(self, method: str, times: int | None = None) -> None:
        """Answer 500 on ``method`` ``times`` times (``None``: until cleared)."""
        self.faults.fail_methods[method.lower()] = times

    def block_method(self, method: str, blocked: bool = True) -> None:
        """Force 429 ``OPERATION_TIME_LIMIT`` on ``method`` until unblocked."""
        if blocked:
            self.faults.block_methods.add(method.lower())
        else:
            self.faults.block_methods.discard(method.lower())

    async def slow_down(self, method: str) -> None:
        """Wait the configured delay (the whole request, plus the method's own)."""
        delay = self.faults.delay + self.faults.method_delays.get(method.lower(), 0.0)
        if delay > 0:
            await sleep(delay)

    def snapshot(self) -> dict[str, Any]:
        """The limiter's state for the control surface."""
        return {
            "rate": self.rate,
            "burst": self.burst,
            "enabled": self.enabled,
            "level": round(self.level(), 4),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "operating_limit": self.operating_limit,
            "operating_window": self.operating_window,
            "operating_scope": self.operating_scope,
            "costs": dict(self._costs),
            "faults": {
                "overload": self.faults.overload,
                "overload_status": self.faults.overload_status,
                "fail_next": self.faults.fail_next,
                "fail_methods": dict(self.faults.fail_methods),
                "block_methods": sorted(self.faults.block_methods),
                "delay": self.faults.delay,
                "method_delays": dict(self.faults.method_delays),
            },
        }


def _internal_error() -> RestError:
    return RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
