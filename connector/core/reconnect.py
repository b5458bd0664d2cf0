"""When to reconnect to the push server, and over which transport.

Pure: no I/O; randomness and time are passed in. The rules (digest §8.5 and §8.6, seed
L2133–2147 and L2189–2201):

* the reconnect ladder by consecutive failures (reading A22): n=1 → 100 ms, n=2 → 15 s,
  3 ≤ n < 5 → 45 s, 5 ≤ n ≤ 10 → 10 min, n > 10 → 1 h; reset on a successful
  connection; every step configurable (:class:`Ladder`);
* WebSocket → long polling (reading A24): switch after the 5th consecutive WebSocket
  failure; permanently when the WebSocket never connected in this process, otherwise
  retry the WebSocket after a random 10–30 min (:class:`TransportPolicy`);
* ``config_expire`` / ``server_restart``: wait a random 10–120 s (:func:`control_delay`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Uniform(Protocol):
    """A source of randomness: ``random.Random`` fits."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class Ladder:
    """Delay before the next attempt, by the number of consecutive failures.

    ``steps`` are ``(from_failure, delay_seconds)`` pairs in increasing order: failure
    ``n`` waits the delay of the last step whose ``from_failure`` ≤ ``n``.
    """

    steps: tuple[tuple[int, float], ...] = (
        (1, 0.1),
        (2, 15.0),
        (3, 45.0),
        (5, 600.0),
        (11, 3600.0),
    )

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0][0] != 1:
            raise ValueError("the ladder must start at failure 1")
        starts = [start for start, _ in self.steps]
        if starts != sorted(set(starts)):
            raise ValueError("ladder steps must be strictly increasing")
        if any(delay < 0 for _, delay in self.steps):
            raise ValueError("ladder delays must not be negative")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 for none)."""
        chosen = 0.0
        for start, delay in self.steps:
            if failures >= start:
                chosen = delay
        return chosen

    def scaled(self, factor: float) -> Ladder:
        """The same ladder with every delay multiplied by ``factor`` (for demos/tests)."""
        return Ladder(tuple((start, delay * factor) for start, delay in self.steps))


@dataclass
class Backoff:
    """Counts consecutive failures and says how long to wait before the next attempt."""

    ladder: Ladder = field(default_factory=Ladder)
    failures: int = 0

    def failed(self) -> float:
        """Record one more failure; return the delay before the next attempt."""
        self.failures += 1
        return self.ladder.delay(self.failures)

    def succeeded(self) -> None:
        """A connection worked: the next failure is the first again."""
        self.failures = 0


class Transport(StrEnum):
    WEBSOCKET = "websocket"
    LONG_POLLING = "long_polling"


@dataclass
class TransportPolicy:
    """Which transport to use next (reading A24).

    Call :meth:`websocket_opened` when a WebSocket handshake succeeds and
    :meth:`websocket_failed` when one fails (or is closed with 1006/1008). After
    ``switch_after`` consecutive failures the policy moves to long polling: for good
    when no WebSocket ever opened, otherwise until a random time ``retry_min``–
    ``retry_max`` seconds later. A WebSocket retry that fails goes straight back to long
    polling for another random period.
    """

    rng: Uniform
    switch_after: int = 5
    retry_min: float = 600.0
    retry_max: float = 1800.0
    consecutive_failures: int = 0
    ever_opened: bool = False
    permanent: bool = False
    retry_at: float | None = None
    _mode: Transport = Transport.WEBSOCKET
    _probing: bool = False

    def current(self, now: float) -> Transport:
        """The transport to use at ``now`` (seconds, any monotonic origin)."""
        if (
            self._mode is Transport.LONG_POLLING
            and not self.permanent
            and self.retry_at is not None
            and now >= self.retry_at
        ):
            self._mode = Transport.WEBSOCKET
            self._probing = True
            self.retry_at = None
        return self._mode

    def websocket_opened(self) -> None:
        self.ever_opened = True
        self.consecutive_failures = 0
        self._probing = False
        self._mode = Transport.WEBSOCKET

    def websocket_failed(self, now: float) -> Transport:
        """Record a WebSocket failure at ``now``; return the transport to use next."""
        self.consecutive_failures += 1
        if self._probing or self.consecutive_failures >= self.switch_after:
            self.switch_to_long_polling(now)
        return self._mode

    def switch_to_long_polling(self, now: float) -> None:
        """Move to long polling now (also used when the server offers no WebSocket)."""
        self._mode = Transport.LONG_POLLING
        self._probing = False
        self.consecutive_failures = 0
        self.permanent = not self.ever_opened
        self.retry_at = (
            None if self.permanent else now + self.rng.uniform(self.retry_min, self.retry_max)
        )


def control_delay(rng: Uniform, low: float = 10.0, high: float = 120.0) -> float:
    """The random wait after ``config_expire`` / ``server_restart`` (seed L2201)."""
    return rng.uniform(low, high)
