"""The safety poll: a wake every ``interval`` seconds, and at once when poked.

A push is only a hint (A18): notifications can be lost while disconnected, and a server
that speaks an unsupported protocol (version ≥ 5) sends none we understand. So beside
the Push&Pull listener runs this timer.

The listener itself emits a ``"connected"`` wake after every (re)connect; wire its
``on_connect`` to :meth:`SafetyPoll.restart` so the interval starts again from there
(no double wake). :meth:`SafetyPoll.poke` wakes at once, for callers without a listener.
"""

from __future__ import annotations

import asyncio

from connector.adapters.pull_wake import (
    AsyncClock,
    SystemClock,
    WakeSink,
    cancel_and_wait,
    emit_wake,
)

DEFAULT_INTERVAL = 60.0


class SafetyPoll:
    """Emit ``"safety"`` wakes every ``interval`` s and a ``"connected"`` wake on :meth:`poke`."""

    def __init__(
        self,
        wake: WakeSink,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: AsyncClock | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the safety poll interval must be positive")
        self._wake = wake
        self._interval = interval
        self._clock = clock or SystemClock()
        self._signal = asyncio.Event()
        self._wake_now = False
        self.wakes = 0

    def poke(self) -> None:
        """Wake now and start the interval again."""
        self._wake_now = True
        self._signal.set()

    def restart(self) -> None:
        """Start the interval again without waking (someone else just woke the drainer)."""
        self._signal.set()

    async def _wait(self) -> bool:
        """Wait for a signal or the interval; True when the interval ran out."""
        signal = asyncio.ensure_future(self._signal.wait())
        timer = asyncio.ensure_future(self._clock.sleep(self._interval))
        try:
            await asyncio.wait({signal, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait((signal, timer))
        return not self._signal.is_set()

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            elapsed = await self._wait()
            self._signal.clear()
            wake_now, self._wake_now = self._wake_now, False
            if elapsed or wake_now:
                self.wakes += 1
                emit_wake(self._wake, "safety" if elapsed else "poke")
