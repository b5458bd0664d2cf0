"""Time for the emulator: a time source (the wall clock by default) plus an offset tests
can move forward.

A test that drives the emulator from its own clock passes the source instead of
subclassing: ``Clock(source=manual_clock.now)``. ``now()`` and ``monotonic()`` then read
that source (plus the offset), so the emulator sees the test's time exactly, and
``advance()`` still moves the emulator ahead of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone


class Clock:
    """Portal time: ``source()`` (default wall time) plus an offset :meth:`advance` moves.

    ``now()`` is seconds since the epoch (float). ``monotonic()`` is the same source for a
    custom clock, ``time.monotonic()`` for the wall clock; both carry the offset. ``tz`` is
    the portal's time zone, used when rendering ISO-8601 dates with an offset (Bitrix24
    shows portal-local time, ``2018-02-14T14:20:19+02:00``).

    With a ``source``, :meth:`advance` moves only the emulator ahead of the source; to
    move both together, advance the source itself.
    """

    def __init__(
        self,
        *,
        offset: float = 0.0,
        tz_hours: int = 3,
        source: Callable[[], float] | None = None,
    ) -> None:
        self._offset = offset
        self._source = source
        self.tz = timezone(timedelta(hours=tz_hours))

    @property
    def offset(self) -> float:
        """Seconds added to the source so far (the start offset plus every advance)."""
        return self._offset

    def now(self) -> float:
        base = time.time() if self._source is None else self._source()
        return base + self._offset

    def monotonic(self) -> float:
        base = time.monotonic() if self._source is None else self._source()
        return base + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def iso(self, ts: float | None = None) -> str:
        """ISO-8601 with the portal's offset, seconds precision: 2018-02-14T14:20:19+02:00."""
        value = self.now() if ts is None else ts
        return (
            datetime.fromtimestamp(value, tz=UTC).astimezone(self.tz).isoformat(timespec="seconds")
        )
