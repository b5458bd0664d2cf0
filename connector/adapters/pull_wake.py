"""What the Push&Pull listener and the safety poll share: the wake sink and the clock.

A *wake* tells the drainer "drain now". It is only a hint (A18): the receiver must be
idempotent, and missing one is recovered by the safety poll. A sink is either a callable
taking the reason (``"push"``, ``"connected"``, ``"safety"``) or an object with
``set()`` such as :class:`asyncio.Event`.

The clock is injected so tests can run hours of reconnect ladder in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Settable(Protocol):
    """An ``asyncio.Event``-like wake target."""

    def set(self) -> None: ...


WakeSink = Callable[[str], object] | Settable


def emit_wake(sink: WakeSink, reason: str) -> None:
    """Deliver one wake to ``sink``: ``sink.set()`` or ``sink(reason)``."""
    if isinstance(sink, Settable):
        sink.set()
    else:
        sink(reason)


class AsyncClock(Protocol):
    """Wall time (channel ends are wall times), monotonic time and sleeping."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until they finish, without swallowing our own cancel."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
