"""The Push&Pull listener against the emulator's push server, served by uvicorn on loopback.

The emulator runs in a background thread (``ServerThread``); the listener runs in the
test's event loop and talks to it over real sockets. ``get_config`` calls
``pull.application.config.get`` over HTTP with the app's token (the REST client is not
needed for that). The listener's clock follows the emulator's test clock, so advancing
the emulator clock shortens the listener's waits too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connector.adapters.pull_listener import PullListener
from connector.core.reconnect import Ladder
from connector.emulator.app import Emulator
from connector.emulator.pull import PullHub
from connector.emulator.server import ServerThread
from tests.adapters.pull_fakes import OURS, FixedRandom, ScaledClock, Wakes, eventually

APP = "local.pulltest.listener"


class EmulatorClock:
    """The listener's clock, following the emulator's: ``advance`` ends sleeps early."""

    def __init__(self, emulator: Emulator) -> None:
        self._clock = emulator.clock

    def time(self) -> float:
        return self._clock.now()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        until = self.monotonic() + seconds
        # poll: the emulator clock can jump forward (advance) at any moment
        while (left := until - self.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, 0.01))


@dataclass
class Rig:
    emulator: Emulator
    server: ServerThread
    token: str
    http: httpx.AsyncClient
    config_calls: int = 0

    @property
    def hub(self) -> PullHub:
        hub: PullHub = self.emulator.default_portal.pull
        return hub

    async def get_config(self) -> dict[str, Any]:
        self.config_calls += 1
        response = await self.http.get(
            f"{self.server.base_url}/rest/pull.application.config.get",
            params={"auth": self.token},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def bind_offline(self, connector: str) -> None:
        response = await self.http.post(
            f"{self.server.base_url}/rest/event.bind",
            data={
                "auth": self.token,
                "event": "ONCRMCOMPANYUPDATE",
                "event_type": "offline",
                "auth_connector": connector,
            },
        )
        assert response.status_code == 200, response.text

    def ui_change(self, company: int, title: str) -> None:
        """A person edits a company in the portal UI (fires the offline event)."""
        self.emulator.ui_update("company", company, {"TITLE": title})

    def websocket_count(self) -> int:
        return int(self.hub.stats["websocket_connections"])


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    emulator = Emulator()
    emulator.set_access_ttl(10**8)  # the tests move the clock by 12 h
    with ServerThread(emulator) as server:
        app = emulator.install_app(APP, scopes=("crm", "pull", "user"), base_url=server.base_url)
        async with httpx.AsyncClient() as http:
            yield Rig(emulator, server, app["access_token"], http)


@asynccontextmanager
async def listening(rig: Rig, wakes: Wakes, **options: Any) -> AsyncIterator[PullListener]:
    listener = PullListener(
        get_config=rig.get_config,
        connector_id=OURS,
        wake=wakes,
        http=rig.http,
        clock=EmulatorClock(rig.emulator),
        rng=options.pop("rng", FixedRandom(0.5)),
        ws_ping_interval=None,
        ws_proxy=None,
        **options,
    )
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def attached(rig: Rig, kind: str = "websocket") -> None:
    """Wait until the server has attached our subscription (the client may see the
    handshake finish a moment before: a change made in between is only in history)."""
    await eventually(lambda: len(rig.hub.connections(kind)) == 1)


async def company(rig: Rig) -> int:
    return rig.emulator.ui_add("company", {"TITLE": "Acme"})


@pytest.mark.parametrize(("version", "extra"), [(4, "text"), (3, "top"), (3, "text"), (4, "top")])
async def test_event_offline_wakes_over_websocket(rig: Rig, version: int, extra: str) -> None:
    """v4 (JSON array) and v3 (NGINX markers) framing, ``extra`` inside or beside
    ``text``: a UI change wakes us once."""
    rig.hub.set_version(version)
    rig.hub.set_extra_placement(extra)
    await rig.bind_offline(OURS)
    cid = await company(rig)
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await attached(rig)
        rig.ui_change(cid, "changed")
        await eventually(lambda: wakes.count("push") == 1)
        [info] = rig.hub.connections("websocket")
    assert (info["version"], info["format"]) == (version, "json" if version >= 4 else "")
    assert rig.websocket_count() == 1
    assert listener.stats.frames_rejected == listener.stats.frames_skipped == 0
    assert listener.cursor.mid is not None


@pytest.mark.parametrize("mode", ["shared", "personal"])
async def test_subscribes_every_channel_with_format(rig: Rig, mode: str) -> None:
    """The connection carries both channels and (v4) format=json; in personal mode
    (no clientId in the config) the server accepts it without clientId."""
    rig.hub.settings.mode = mode
    wakes = Wakes()
    async with listening(rig, wakes):
        await eventually(lambda: len(rig.hub.connections("websocket")) == 1)
        [info] = rig.hub.connections("websocket")
    assert info["channel_types"] == ["private", "shared"]
    assert info["format"] == "json"


async def test_wake_for_our_connector_not_for_another(rig: Rig) -> None:
    """event_offline for connector "other" arrives but does not wake us; ours does."""
    await rig.bind_offline("other")
    cid = await company(rig)
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await attached(rig)
        rig.ui_change(cid, "for other")
        await eventually(lambda: listener.stats.messages == 1)
        assert wakes.count("push") == 0
        await rig.bind_offline(OURS)
        rig.ui_change(cid, "for both")
        await eventually(lambda: listener.stats.messages == 2)
    assert wakes.count("push") == 1


async def test_history_replay_by_mid_after_a_drop(rig: Rig) -> None:
    """A change made while the connection is down is replayed on reconnect (by mid)."""
    await rig.bind_offline(OURS)
    cid = await company(rig)
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await attached(rig)
        rig.ui_change(cid, "first")
        await eventually(lambda: wakes.count("push") == 1)
        rig.hub.set_stall("handshake")  # hold the reconnect until the change is made
        rig.hub.drop_connections(1006)
        await eventually(lambda: listener.stats.state != "connected")
        rig.ui_change(cid, "while down")
        rig.hub.set_stall(None)
        await eventually(lambda: wakes.count("push") == 2)
    assert rig.hub.stats["replayed"] >= 1
    assert listener.stats.connects == 2
    assert list(listener.stats.delays)[:1] == [0.1]


async def test_channel_expire_reconnect(rig: Rig) -> None:
    """channel_expire/reconnect: the new channel is used at once, no new config.get."""
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await eventually(lambda: rig.websocket_count() == 1)
        old = set(rig.hub.connections("websocket")[0]["channels"])
        rig.emulator.pull_command("channel_expire", client_id=APP, action="reconnect")
        await eventually(lambda: rig.websocket_count() == 2 and listener.stats.connects == 2)
        new = set(rig.hub.connections("websocket")[0]["channels"])
    assert rig.config_calls == 1
    assert old != new and len(old & new) == 1  # the shared one was swapped
    assert listener.stats.controls == {"ChannelExpire": 1}


async def test_channel_expire_get_config(rig: Rig) -> None:
    """channel_expire/get_config: config fetched again, reconnected on fresh channels."""
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await eventually(lambda: rig.websocket_count() == 1)
        rig.emulator.pull_command("channel_expire", client_id=APP, action="get_config")
        await eventually(lambda: listener.stats.connects == 2)
    assert rig.config_calls == 2
    assert rig.hub.stats["refused_channel"] == 0


@pytest.mark.parametrize("command", ["config_expire", "server_restart"])
async def test_config_expire_and_server_restart(rig: Rig, command: str) -> None:
    """config_expire/server_restart: wait U(10, 120) s on the test clock, new config."""
    wakes = Wakes()
    async with listening(rig, wakes, rng=FixedRandom(0.5)) as listener:
        await eventually(lambda: rig.websocket_count() == 1)
        rig.emulator.pull_command(command, client_id=APP)
        await eventually(lambda: 65.0 in listener.stats.delays)
        assert listener.stats.connects == 1  # still waiting
        rig.emulator.advance(66.0)
        await eventually(lambda: listener.stats.connects == 2)
    assert rig.config_calls == 2


async def test_channel_expiry_on_the_test_clock(rig: Rig) -> None:
    """Moving the emulator clock past the channel end makes the listener fetch a new
    config and reconnect on the new channels before the server refuses the old ones."""
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await eventually(lambda: rig.websocket_count() == 1)
        old = set(rig.hub.connections("websocket")[0]["channels"])
        rig.hub.expire_channels()
        await eventually(lambda: listener.stats.connects == 2)
        await eventually(lambda: len(rig.hub.connections("websocket")) == 1)
        new = set(rig.hub.connections("websocket")[0]["channels"])
    assert rig.config_calls >= 2
    assert old.isdisjoint(new)


async def test_long_polling_fallback_when_websocket_is_refused(rig: Rig) -> None:
    """WebSocket refused (403) five times → long polling, which delivers the wake."""
    rig.hub.refuse_websocket(403)
    rig.hub.settings.hold_timeout = 0.5  # also bounds the server's shutdown
    rig.hub.settings.long_polling_key = "misspelled"  # long_pooling_secure (A26)
    rig.hub.settings.client_id_location = "top"  # clientId beside server (A26)
    await rig.bind_offline(OURS)
    cid = await company(rig)
    wakes = Wakes()
    async with listening(rig, wakes, ladder=Ladder().scaled(0.001)) as listener:
        # change while a poll is held (before any message there is no mid to resume from)
        await eventually(lambda: len(rig.hub.connections("long_poll")) == 1)
        rig.ui_change(cid, "over long polling")
        await eventually(lambda: wakes.count("push") == 1)
        rig.ui_change(cid, "again")  # between polls or held: the mid covers the gap
        await eventually(lambda: wakes.count("push") == 2)
    assert listener.stats.transport == "long_polling"
    assert rig.hub.stats["websocket_refused"] == 5
    assert rig.hub.stats["long_poll_requests"] >= 1


@pytest.mark.parametrize("code", [1008, 1006])
async def test_close_codes_reconnect(rig: Rig, code: int) -> None:
    """A connection closed with 1006/1008 after it worked is reconnected (100 ms)."""
    await rig.bind_offline(OURS)
    cid = await company(rig)
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await attached(rig)
        rig.ui_change(cid, "before")
        await eventually(lambda: wakes.count("push") == 1)
        rig.hub.drop_connections(code)
        await eventually(lambda: listener.stats.connects == 2)
    assert list(listener.stats.delays) == [0.1]
    assert listener.stats.transport == "websocket"


async def test_version_5_is_not_connected(rig: Rig) -> None:
    """A version-5 server: the listener logs it, stays unconnected, keeps rechecking."""
    rig.hub.set_version(5)
    wakes = Wakes()
    async with listening(rig, wakes) as listener:
        await eventually(lambda: listener.stats.state == "unsupported")
    assert rig.hub.connections() == []
    assert wakes.reasons == []


class FastSleepClock(ScaledClock):
    """Sleeps scaled down (the ladder's hours take milliseconds); wall time is the
    emulator's, so the channels it hands out do not look expired."""

    def __init__(self, emulator: Emulator, scale: float) -> None:
        super().__init__(scale=scale)
        self._emulator_clock = emulator.clock

    def time(self) -> float:
        return self._emulator_clock.now()


async def test_ladder_timings_while_config_get_fails(rig: Rig) -> None:
    """pull.application.config.get answering 500 twelve times: the listener waits
    0.1, 15, 45, 45, 600×6, 3600×2 s (scaled clock), then connects."""
    rig.emulator.set_faults(fail_methods={"pull.application.config.get": 12})
    clock = FastSleepClock(rig.emulator, scale=1e-5)
    wakes = Wakes()
    listener = PullListener(
        get_config=rig.get_config,
        connector_id=OURS,
        wake=wakes,
        http=rig.http,
        clock=clock,
        ws_ping_interval=None,
        ws_proxy=None,
    )
    task = asyncio.create_task(listener.run())
    try:
        await eventually(lambda: listener.stats.connects == 1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert list(listener.stats.delays) == [0.1, 15.0, 45.0, 45.0] + [600.0] * 6 + [3600.0] * 2
    assert rig.config_calls == 13
