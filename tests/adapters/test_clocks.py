"""Test clocks for the portal client: manual, scaled and virtual (discrete-event) time."""

from __future__ import annotations

import asyncio

import pytest

from connector.adapters.clocks import ManualClock, ScaledClock, SystemClock, VirtualClock


async def test_manual_clock_advances_on_sleep_and_tells_listeners() -> None:
    """sleep() moves time at once, records the wait and informs listeners."""
    clock = ManualClock(start=100.0)
    seen: list[float] = []
    clock.listeners.append(seen.append)

    await clock.sleep(2.5)
    await clock.sleep(-1)

    assert clock.now() == 102.5
    assert clock.sleeps == [2.5, 0.0]
    assert seen == [2.5, 0.0]


async def test_virtual_clock_wakes_tasks_in_deadline_order() -> None:
    """Time jumps to the next deadline only when every participant sleeps."""
    clock = VirtualClock(start=0.0)
    order: list[tuple[str, float]] = []

    async def task(name: str, waits: list[float]) -> None:
        for wait in waits:
            await clock.sleep(wait)
            order.append((name, clock.now()))

    await clock.gather(task("a", [3.0, 3.0]), task("b", [1.0, 1.0, 1.0, 10.0]))

    assert [when for _, when in order] == [1.0, 2.0, 3.0, 3.0, 6.0, 13.0]
    assert [when for name, when in order if name == "a"] == [3.0, 6.0]
    assert [when for name, when in order if name == "b"] == [1.0, 2.0, 3.0, 13.0]


async def test_virtual_clock_waits_for_busy_participants() -> None:
    """A participant that is busy (not sleeping) holds time still."""
    clock = VirtualClock(start=0.0)
    gate = asyncio.Event()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5.0)
        woke.append(clock.now())

    async def busy() -> None:
        await gate.wait()

    running = asyncio.ensure_future(clock.gather(sleeper(), busy()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert (woke, clock.now()) == ([], 0.0)
    gate.set()
    await running

    assert woke == [5.0]


async def test_virtual_clock_zero_sleep_and_listeners() -> None:
    """A zero sleep yields without moving time; advances reach listeners."""
    clock = VirtualClock(start=10.0)
    steps: list[float] = []
    clock.listeners.append(steps.append)

    await clock.sleep(0)
    await clock.gather(clock.sleep(4.0))

    assert clock.now() == 14.0
    assert steps == [4.0]


async def test_scaled_and_system_clocks() -> None:
    """A scaled clock runs faster than the system clock; bad speeds are refused."""
    scaled = ScaledClock(speed=1000.0, start=0.0)
    system = SystemClock()
    before = system.now()

    await scaled.sleep(5.0)
    await system.sleep(0)

    assert scaled.now() >= 5.0
    assert system.now() >= before
    with pytest.raises(ValueError):
        ScaledClock(speed=0)
