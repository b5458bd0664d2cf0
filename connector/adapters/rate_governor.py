"""The client-side rate governor: send only what the portal will accept.

Before every request the REST client calls :meth:`RateGovernor.acquire` with the method
name (``batch`` for a batch: the portal bills a batch as one request and its operating
time to ``batch``). The governor

1. refuses at once after a fatal answer (``OVERLOAD_LIMIT``): never hammer a blocked
   portal;
2. waits while that method rests for its operating-time budget
   (:class:`~connector.core.operating_budget.OperatingBudget`);
3. books a slot in the leaky bucket (:mod:`connector.core.rate_bucket`) and waits until
   the slot is due.

The bucket lives in a :class:`BucketLedger`: :class:`MemoryLedger` in the process (one
worker, SQLite), or ``connector.adapters.store.rate_ledger.SqlBucketLedger`` when several
workers share a PostgreSQL/MariaDB database and so the portal's bucket. After any
``QUERY_LIMIT_EXCEEDED`` the ledger is penalised: full bucket, slower pace for a while.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from connector.adapters.clocks import SystemClock
from connector.core.client_clock import Clock
from connector.core.operating_budget import OperatingBudget
from connector.core.portal_answers import operating_time
from connector.core.rate_bucket import BucketProfile, BucketState, penalize, reserve
from connector.errors import FatalPortalError, PortalError, RetriableError

__all__ = ["BucketLedger", "GovernorStats", "MemoryLedger", "RateGovernor"]

log = logging.getLogger(__name__)


class BucketLedger(Protocol):
    """Where the bucket's state lives. ``blocking`` ledgers are called in a thread."""

    blocking: bool

    def reserve(self, now: float, profile: BucketProfile) -> float: ...

    def penalize(self, now: float, profile: BucketProfile) -> None: ...


class MemoryLedger:
    """The bucket in this process (thread-safe)."""

    blocking = False

    def __init__(self, state: BucketState | None = None) -> None:
        self.state = state or BucketState()
        self._lock = threading.Lock()

    def reserve(self, now: float, profile: BucketProfile) -> float:
        with self._lock:
            self.state, wait = reserve(self.state, now, profile)
        return wait

    def penalize(self, now: float, profile: BucketProfile) -> None:
        with self._lock:
            self.state = penalize(self.state, now, profile)


@dataclass
class GovernorStats:
    """Counters for metrics and tests."""

    acquired: int = 0
    waited: int = 0
    waited_s: float = 0.0
    limit_answers: int = 0
    operating_pauses: int = 0


class RateGovernor:
    """Paces requests for one portal; see the module docstring."""

    def __init__(
        self,
        profile: BucketProfile | None = None,
        *,
        clock: Clock | None = None,
        ledger: BucketLedger | None = None,
        budget: OperatingBudget | None = None,
    ) -> None:
        self.profile = profile or BucketProfile()
        self.clock: Clock = clock or SystemClock()
        self.ledger: BucketLedger = ledger or MemoryLedger()
        self.budget = budget or OperatingBudget()
        self.stats = GovernorStats()
        self.stopped: FatalPortalError | None = None

    async def acquire(self, method: str) -> None:
        """Wait until ``method`` may be sent; raise the fatal error once stopped."""
        self._check_stopped()
        rest = self.budget.wait_for(method, self.clock.now())
        if rest > 0:
            self.stats.operating_pauses += 1
            log.info(
                "portal.method_resting", extra={"portal.method": method, "portal.wait_s": rest}
            )
            await self.clock.sleep(rest)
            self._check_stopped()
        now = self.clock.now()
        if self.ledger.blocking:
            wait = await asyncio.to_thread(self.ledger.reserve, now, self.profile)
        else:
            wait = self.ledger.reserve(now, self.profile)
        self.stats.acquired += 1
        if wait > 0:
            self.stats.waited += 1
            self.stats.waited_s += wait
            await self.clock.sleep(wait)
            self._check_stopped()

    def observe(self, method: str, body: Any) -> None:
        """Account a successful answer's operating time to ``method``."""
        self.budget.observe(method, operating_time(body), self.clock.now())

    async def on_error(self, method: str, error: PortalError) -> None:
        """Adapt to an error answer: slow down, rest the method, or stop everything."""
        code = error.code.upper()
        now = self.clock.now()
        if code == "QUERY_LIMIT_EXCEEDED":
            self.stats.limit_answers += 1
            log.warning("portal.rate_limited", extra={"portal.method": method})
            if self.ledger.blocking:
                await asyncio.to_thread(self.ledger.penalize, now, self.profile)
            else:
                self.ledger.penalize(now, self.profile)
        elif code == "OPERATION_TIME_LIMIT" and isinstance(error, RetriableError):
            self.stats.limit_answers += 1
            wait = error.retry_after if error.retry_after is not None else 60.0
            self.budget.pause(method, now + wait)
            log.warning(
                "portal.operating_limited", extra={"portal.method": method, "portal.wait_s": wait}
            )
        elif isinstance(error, FatalPortalError) and code in ("OVERLOAD_LIMIT", "PORTAL_DELETED"):
            self.stop(error)

    def known_reset_at(self, method: str) -> float | None:
        """The method's last seen ``operating_reset_at``."""
        return self.budget.known_reset_at(method)

    def stop(self, error: FatalPortalError) -> None:
        """Refuse every further request with ``error`` (until :meth:`resume`)."""
        if self.stopped is None:
            log.error("portal.stopped", extra={"portal.code": error.code})
        self.stopped = error

    def resume(self) -> None:
        """Allow traffic again (an operator confirmed the block is lifted)."""
        self.stopped = None

    def _check_stopped(self) -> None:
        if self.stopped is not None:
            raise FatalPortalError(
                f"portal traffic stopped after {self.stopped.code}: {self.stopped.message}",
                code=self.stopped.code,
                status=self.stopped.status,
                method=self.stopped.method,
            )
