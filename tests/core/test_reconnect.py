"""The reconnect ladder, the WebSocket → long-polling rule and control delays."""

from __future__ import annotations

import random

import pytest

from connector.core.reconnect import (
    Backoff,
    Ladder,
    Transport,
    TransportPolicy,
    control_delay,
)


class FixedRandom:
    """Returns a fixed fraction of the requested range and records the ranges asked."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return a + (b - a) * self.fraction


def test_ladder_matches_reading_a22() -> None:
    """Failures 1..12 wait 0.1, 15, 45, 45, 600×6, 3600, 3600 seconds (reading A22)."""
    backoff = Backoff()
    delays = [backoff.failed() for _ in range(12)]
    assert delays == [0.1, 15.0, 45.0, 45.0] + [600.0] * 6 + [3600.0] * 2


def test_success_resets_the_ladder() -> None:
    """After a success the next failure waits the first step again."""
    backoff = Backoff()
    for _ in range(7):
        backoff.failed()
    backoff.succeeded()
    assert backoff.failed() == 0.1


def test_zero_failures_wait_nothing() -> None:
    """With no failure recorded the delay is zero."""
    assert Ladder().delay(0) == 0.0


def test_ladder_is_configurable_and_scalable() -> None:
    """Custom steps apply, and ``scaled`` multiplies every delay."""
    ladder = Ladder(((1, 1.0), (3, 5.0)))
    assert [ladder.delay(n) for n in (1, 2, 3, 9)] == [1.0, 1.0, 5.0, 5.0]
    assert Ladder().scaled(0.001).delay(11) == pytest.approx(3.6)


@pytest.mark.parametrize(
    "steps", [(), ((2, 1.0),), ((1, 1.0), (1, 2.0)), ((1, 1.0), (3, 1.0), (2, 1.0)), ((1, -1.0),)]
)
def test_bad_ladders_are_refused(steps: tuple[tuple[int, float], ...]) -> None:
    """A ladder that does not start at 1, is not increasing, or is negative is refused."""
    with pytest.raises(ValueError):
        Ladder(steps)


def test_websocket_never_worked_switches_for_good_after_fifth_failure() -> None:
    """Four failures stay on WebSocket; the fifth moves to long polling permanently."""
    policy = TransportPolicy(rng=FixedRandom(0.5))
    outcomes = [policy.websocket_failed(now=float(i)) for i in range(5)]
    assert outcomes == [Transport.WEBSOCKET] * 4 + [Transport.LONG_POLLING]
    assert policy.permanent
    assert policy.current(now=10**9) is Transport.LONG_POLLING


def test_websocket_that_worked_is_retried_after_10_to_30_minutes() -> None:
    """Once a WebSocket opened, the switch is temporary: retry at now + U(600, 1800)."""
    rng = FixedRandom(0.25)
    policy = TransportPolicy(rng=rng)
    policy.websocket_opened()
    for i in range(5):
        policy.websocket_failed(now=1000.0 + i)
    assert rng.asked == [(600.0, 1800.0)]
    assert not policy.permanent
    assert policy.retry_at == 1004.0 + 900.0
    assert policy.current(now=1903.9) is Transport.LONG_POLLING
    assert policy.current(now=1904.0) is Transport.WEBSOCKET


def test_failed_websocket_retry_returns_to_long_polling_at_once() -> None:
    """A retried WebSocket that fails once goes back to long polling for a new period."""
    policy = TransportPolicy(rng=FixedRandom(0.0))
    policy.websocket_opened()
    for _ in range(5):
        policy.websocket_failed(now=0.0)
    assert policy.current(now=600.0) is Transport.WEBSOCKET
    assert policy.websocket_failed(now=600.0) is Transport.LONG_POLLING
    assert policy.retry_at == 1200.0


def test_opening_resets_the_failure_count() -> None:
    """Failures separated by a successful open never add up to a switch."""
    policy = TransportPolicy(rng=FixedRandom(0.5))
    for _ in range(3):
        for _ in range(4):
            assert policy.websocket_failed(now=0.0) is Transport.WEBSOCKET
        policy.websocket_opened()
    assert policy.current(now=0.0) is Transport.WEBSOCKET


def test_switch_threshold_is_configurable() -> None:
    """``switch_after`` sets how many consecutive failures move to long polling."""
    policy = TransportPolicy(rng=FixedRandom(0.5), switch_after=2)
    assert policy.websocket_failed(now=0.0) is Transport.WEBSOCKET
    assert policy.websocket_failed(now=0.0) is Transport.LONG_POLLING


def test_control_delay_is_within_10_to_120_seconds() -> None:
    """config_expire/server_restart waits are drawn from [10, 120] s."""
    rng = random.Random(7)
    delays = [control_delay(rng) for _ in range(500)]
    assert all(10.0 <= d <= 120.0 for d in delays)
    assert max(delays) - min(delays) > 50  # really random, not a constant
    assert control_delay(FixedRandom(1.0)) == 120.0
