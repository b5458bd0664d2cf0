"""The safety poll beside the listener: interval wakes, poke, restart."""

from __future__ import annotations

import asyncio

import pytest

from connector.adapters.safety_poll import SafetyPoll
from tests.adapters.pull_fakes import (
    ScaledClock,
    Wakes,
    eventually,
)


async def test_safety_poll_ticks_and_wakes_at_once_when_poked() -> None:
    """The safety poll wakes every interval and immediately when poked."""
    clock, wakes = ScaledClock(scale=1e-3), Wakes()
    poll = SafetyPoll(wakes, interval=60.0, clock=clock)
    task = asyncio.create_task(poll.run())
    await eventually(lambda: wakes.count("safety") >= 2)
    poll.poke()
    await eventually(lambda: wakes.count("poke") == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(clock.sleeps) == {60.0}


class HeldClock(ScaledClock):
    """Sleeps never end by themselves: only a cancel ends them."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.Event().wait()


async def test_safety_poll_restart_starts_the_interval_again_without_a_wake() -> None:
    """restart() (wired to the listener's on_connect) restarts the timer, no extra wake."""
    clock, wakes = HeldClock(), Wakes()
    poll = SafetyPoll(wakes, interval=60.0, clock=clock)
    task = asyncio.create_task(poll.run())
    await eventually(lambda: len(clock.sleeps) == 1)
    poll.restart()
    await eventually(lambda: len(clock.sleeps) == 2)
    poll.poke()
    await eventually(lambda: len(clock.sleeps) == 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wakes.reasons == ["poke"]


def test_safety_poll_refuses_a_non_positive_interval() -> None:
    """A zero interval would spin: refused."""
    with pytest.raises(ValueError):
        SafetyPoll(lambda _r: None, interval=0)
