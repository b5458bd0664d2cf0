"""The worker's two sync loops (``Worker`` mixes them in).

* the drain loop — on each wake, resume what needs resuming (a failed batch, a dead
  peer's reservations), then drain the queue until it is empty, then settle the holds;
* the push loop — every ``push_interval`` seconds, one round of the ERP's outbox.

They take turns (``turns``, one lock), so the two directions never merge the same record
at the same moment. Portal trouble is counted and waited out; a database failure that
waiting may mend backs off, one that it cannot mend stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.store.db_errors import store_error
from connector.adapters.store.workers import WorkerRegistry
from connector.errors import (
    AuthRevokedError,
    FatalPortalError,
    PortalError,
    StoreError,
)
from connector.service.drain_types import DrainStats
from connector.service.drainer import Drainer
from connector.service.health import Metrics
from connector.service.holds import Holds
from connector.service.pusher import Pusher, PushStats
from connector.service.worker_counts import count_drain, count_push

__all__ = ["WorkLoops", "WorkerStats"]

log = logging.getLogger("connector.worker")


@dataclass
class WorkerStats:
    wakes: int = 0
    drains: int = 0
    failures: int = 0
    totals: DrainStats = field(default_factory=DrainStats)
    pushed: PushStats = field(default_factory=PushStats)
    push_failures: int = 0


class WorkLoops:
    """The drain and push loops; state on the worker."""

    drainer: Drainer
    pusher: Pusher
    holds: Holds
    registry: WorkerRegistry
    metrics: Metrics
    stats: WorkerStats
    turns: asyncio.Lock
    wake: asyncio.Event
    stopping: asyncio.Event
    push_interval: float
    needs_resume: bool
    dead_peers: list[str]
    db_failures: int
    troubled: set[str]
    fatal: BaseException | None

    def stop(self) -> None:
        raise NotImplementedError

    async def _push_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                async with self.turns:
                    pushed = await self.pusher.push_until_empty(max_rounds=1)
                self.stats.pushed.add(pushed)
                count_push(self.metrics, pushed)
                self.db_failures = 0
                self.troubled.discard("push")
            except (FatalPortalError, AuthRevokedError) as exc:
                self.fatal = exc
                self.stop()
                return
            except PortalError as exc:
                self.stats.push_failures += 1
                self.troubled.add("push")  # the portal is being waited out
                self.metrics.failures.labels("push").inc()
                log.warning("push failed, retrying in %.0f s: %s", self.push_interval, exc)
            except (SQLAlchemyError, StoreError) as exc:
                if not self._database_failed("push", exc):
                    return
                await self._back_off()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.push_interval)

    async def _drain_loop(self) -> None:
        while not self.stopping.is_set():
            await self.wake.wait()
            self.wake.clear()
            if self.stopping.is_set():
                break
            self.stats.wakes += 1
            try:
                if self.needs_resume:  # a failed batch (or a dead peer) may hold records
                    dead = list(self.dead_peers)
                    started = time.monotonic()
                    async with self.turns:
                        resumed = await self.drainer.resume()
                    if resumed.records:  # adopted batches are synced records too
                        count_drain(self.metrics, resumed, time.monotonic() - started)
                    self.stats.totals.add(resumed)
                    self.needs_resume = False
                    if dead:
                        await asyncio.to_thread(self.registry.reap, dead)
                while not self.stopping.is_set():
                    started = time.monotonic()
                    async with self.turns:
                        batch = await self.drainer.drain_once()
                    if batch.records:
                        count_drain(self.metrics, batch, time.monotonic() - started)
                    self.stats.totals.add(batch)
                    if not batch.records:
                        break
                started = time.monotonic()
                async with self.turns:
                    flushed = await self.drainer.flush()  # a stop before the queue ran empty
                    if flushed.records:  # the batch reserved ahead, applied on the way out
                        count_drain(self.metrics, flushed, time.monotonic() - started)
                    self.stats.totals.add(flushed)
                    self.stats.totals.add(await self.holds.settle())
                self.stats.drains += 1
            except (FatalPortalError, AuthRevokedError):
                raise
            except PortalError as exc:
                self.stats.failures += 1
                self.troubled.add("drain")
                self.metrics.failures.labels("drain").inc()
                self.needs_resume = True
                log.warning("drain failed, waiting for the next wake: %s", exc)
            except (SQLAlchemyError, StoreError) as exc:
                self.needs_resume = True  # a batch may be reserved; resume adopts it
                if not self._database_failed("drain", exc):
                    return
                await self._back_off()
                self.wake.set()
            else:
                self.db_failures = 0
                self.troubled.discard("drain")

    def _database_failed(self, task: str, exc: SQLAlchemyError | StoreError) -> bool:
        """Log the database's failure in one line; False when waiting cannot mend it."""
        error = exc if isinstance(exc, StoreError) else store_error(exc)
        self.metrics.failures.labels(task).inc()
        if not error.transient:
            log.error("%s stopped: %s", task, error.message)
            self.fatal = error
            self.stop()
            return False
        self.troubled.add(task)
        self.db_failures += 1
        log.warning("%s waits for the database: %s", task, error.message)
        return True

    async def _back_off(self) -> None:
        delay = min(10.0, 0.25 * 2 ** min(self.db_failures, 6))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)
