"""Time for the emulator: real wall time plus an offset tests can move forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone


class Clock:
    """Wall-clock time that a test can push forward with :meth:`advance`.

    ``now()`` is seconds since the epoch (float). ``tz`` is the portal's time zone, used
    when rendering ISO-8601 dates with an offset (Bitrix24 shows portal-local time,
    ``2018-02-14T14:20:19+02:00``).
    """

    def __init__(self, *, offset: float = 0.0, tz_hours: int = 3) -> None:
        self._offset = offset
        self.tz = timezone(timedelta(hours=tz_hours))

    def now(self) -> float:
        return time.time() + self._offset

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def iso(self, ts: float | None = None) -> str:
        """ISO-8601 with the portal's offset, seconds precision: 2018-02-14T14:20:19+02:00."""
        value = self.now() if ts is None else ts
        return (
            datetime.fromtimestamp(value, tz=UTC).astimezone(self.tz).isoformat(timespec="seconds")
        )
