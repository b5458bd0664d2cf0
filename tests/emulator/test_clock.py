"""The emulator's Clock: wall time by default, or a test's own time source, plus an
offset that ``advance`` moves."""

from __future__ import annotations

from typing import Any

import httpx

from connector.emulator.app import Emulator
from connector.emulator.clock import Clock

BASE = "https://emulator.bitrix24.test"


class Source:
    """A test time source: unix seconds that move only when the test says so."""

    def __init__(self, start: float) -> None:
        self.time = start

    def now(self) -> float:
        return self.time


def test_source_drives_now_and_monotonic() -> None:
    """With ``source=``, now() and monotonic() read the source, and follow it when it moves."""
    source = Source(1_700_000_000.0)
    clock = Clock(source=source.now)
    assert (clock.now(), clock.monotonic()) == (1_700_000_000.0, 1_700_000_000.0)
    source.time += 42.5
    assert (clock.now(), clock.monotonic()) == (1_700_000_042.5, 1_700_000_042.5)


def test_advance_moves_ahead_of_the_source() -> None:
    """advance() adds to the offset on top of the source; the source keeps counting."""
    source = Source(1_000.0)
    clock = Clock(source=source.now, offset=5.0)
    clock.advance(60)
    assert clock.now() == 1_065.0
    assert clock.offset == 65.0
    source.time = 2_000.0
    assert clock.monotonic() == 2_065.0


def test_wall_clock_advance_accumulates_the_offset() -> None:
    """Without a source the clock is wall time; advance() still accumulates the offset."""
    clock = Clock()
    clock.advance(3600)
    clock.advance(1.5)
    assert clock.offset == 3601.5


def test_iso_renders_the_source_time_in_the_portal_zone() -> None:
    """iso() renders source time (plus offset) with the portal's UTC offset, to seconds."""
    clock = Clock(source=lambda: 1_518_610_819.4, tz_hours=2)
    assert clock.iso() == "2018-02-14T14:20:19+02:00"
    clock.advance(3600)
    assert clock.iso() == "2018-02-14T15:20:19+02:00"


async def rest(http: httpx.AsyncClient, token: str, method: str) -> Any:
    return (await http.post(f"/rest/{method}", json={"auth": token})).json()


async def test_an_emulator_on_a_test_source_expires_tokens_by_that_source() -> None:
    """Emulator(clock=Clock(source=...)): the access token lives 3600 s of the *source's*
    time, so moving the test's clock (not the emulator's) expires it."""
    source = Source(1_700_000_000.0)
    emulator = Emulator(clock=Clock(source=source.now))
    app = emulator.install_app(scopes=("crm",))
    async with emulator.client(BASE) as http:
        source.time += 3599
        assert (await rest(http, app["access_token"], "profile"))["result"]["ID"] == "1"
        source.time += 2
        assert (await rest(http, app["access_token"], "profile"))["error"] == "expired_token"


async def test_advancing_the_emulator_on_a_source_also_expires_tokens() -> None:
    """Emulator.advance() still works with a source: the emulator runs ahead of it."""
    source = Source(1_700_000_000.0)
    emulator = Emulator(clock=Clock(source=source.now))
    app = emulator.install_app(scopes=("crm",))
    async with emulator.client(BASE) as http:
        assert emulator.advance(3601) == 1_700_003_601.0
        assert (await rest(http, app["access_token"], "profile"))["error"] == "expired_token"
