"""Clocks for the portal client (the :class:`~connector.core.client_clock.Clock` port).

Tests pass a test clock to run minutes of pacing in milliseconds.

* :class:`SystemClock` — wall time (unix seconds, comparable across processes that share
  a rate bucket in the database) and real sleeps.
* :class:`ManualClock` — time moves only when someone sleeps; for one task at a time.
* :class:`ScaledClock` — wall time running ``speed`` times faster; real but shortened
  sleeps (loop latency is sped up too, so keep ``speed`` modest).
* :class:`VirtualClock` — discrete-event time for several tasks: it jumps to the next
  deadline only when every participant is asleep, so work takes no time at all and
  concurrent pacing is exact and deterministic (run them with :meth:`VirtualClock.gather`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ManualClock", "ScaledClock", "SystemClock", "VirtualClock"]


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A test clock: :meth:`sleep` advances time at once and records the wait.

    ``listeners`` are called with each advance (e.g. to move an emulator's clock along).
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self.listeners: list[Callable[[float], None]] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for listener in self.listeners:
            listener(seconds)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class ScaledClock:
    """Wall time sped up ``speed`` times from the moment the clock is made."""

    def __init__(self, speed: float, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._origin = time.time() if start is None else start
        self._base = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._base) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class VirtualClock:
    """Time that advances only when all ``participants`` are sleeping on it.

    ``listeners`` are called with each advance (to move an emulator's clock along).
    """

    def __init__(self, start: float = 1_700_000_000.0, participants: int = 1) -> None:
        self.time = start
        self.participants = participants
        self.listeners: list[Callable[[float], None]] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + seconds, next(self._seq), future))
        self._advance_if_idle()
        await future

    def leave(self) -> None:
        """A participant is done; the others no longer wait for it to sleep."""
        self.participants -= 1
        self._advance_if_idle()

    async def gather(self, *work: Awaitable[Any]) -> list[Any]:
        """Run ``work`` concurrently as the clock's participants."""
        self.participants = len(work)

        async def participant(item: Awaitable[Any]) -> Any:
            try:
                return await item
            finally:
                self.leave()

        return list(await asyncio.gather(*(participant(item) for item in work)))

    def _advance_if_idle(self) -> None:
        if not self._sleepers or len(self._sleepers) < self.participants:
            return
        deadline = self._sleepers[0][0]
        if deadline > self.time:
            step = deadline - self.time
            self.time = deadline
            for listener in self.listeners:
                listener(step)
        while self._sleepers and self._sleepers[0][0] <= self.time:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
