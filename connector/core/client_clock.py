"""The port through which the portal client reads time and waits.

The rate governor and the retry loop never call ``time`` or ``asyncio.sleep`` directly;
they take a :class:`Clock`. The implementations — the real one and the test clocks — are
in ``connector/adapters/clocks.py``, so the core stays free of I/O.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    """A source of unix time in seconds, and a way to wait."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...
