"""The Push&Pull listener when things go wrong: the reconnect ladder, the switch to
long polling and back, refused channels, unusable configs, version 5."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from connector.adapters.pull_listener import PullListener
from connector.core.reconnect import Ladder
from tests.adapters.pull_fakes import (
    OURS,
    FakePush,
    FixedRandom,
    ScaledClock,
    Wakes,
    eventually,
    message,
    offline,
    running,
)


async def test_ladder_timings_on_a_scaled_clock() -> None:
    """Twelve failed config fetches wait 0.1, 15, 45, 45, 600×6, 3600×2 s (A22)."""
    clock, wakes = ScaledClock(scale=1e-5), Wakes()
    calls = 0

    async def failing() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise OSError("portal unreachable")

    push = FakePush()
    async with push.http_client() as http:
        listener = PullListener(
            get_config=failing, connector_id=OURS, wake=wakes, http=http, clock=clock
        )
        task = asyncio.create_task(listener.run())
        await eventually(lambda: calls >= 13)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert list(listener.stats.delays)[:12] == [0.1, 15.0, 45.0, 45.0] + [600.0] * 6 + [3600.0] * 2
    assert wakes.reasons == []


async def test_refused_websocket_falls_back_to_long_polling_for_good() -> None:
    """Five refused WebSocket handshakes (never opened) switch to long polling for good;
    the long poll carries the same query and its event_offline wakes us."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.ws_refuse = True
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.lp_queries) >= 1)
        push.lp_respond([offline(7, OURS)])
        await eventually(lambda: wakes.count("push") == 1)
        await eventually(lambda: len(push.lp_queries) >= 4)
    assert len(push.ws_queries) == 0  # refused before the handler ran
    assert list(listener.stats.delays)[:5] == [0.1, 15.0, 45.0, 45.0, 0.1]
    assert listener.stats.transport == "long_polling"
    query = push.lp_queries[0]
    assert query["CHANNEL_ID"] == ["shared.sig/private.sig"]
    assert query["clientId"] == ["portal-1"]
    assert "mid" not in query
    assert push.lp_queries[-1]["mid"] == [offline(7, OURS)["mid"]]


@pytest.mark.parametrize("code", [1008, 1006])
async def test_blocked_close_codes_count_as_websocket_failures(code: int) -> None:
    """Handshakes that die at once with 1006/1008 count toward the switch to long polling."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.ws_close_code = code  # the fake aborts the TCP connection for 1006
    # the stability rule (30 s open counts as working) is real-time; keep it out here
    async with running(push, clock, wakes, ws_stable_after=1e12) as listener:
        await eventually(lambda: len(push.lp_queries) >= 1)
    assert len(push.ws_queries) == 5
    assert listener._policy.permanent
    assert listener.stats.transport == "long_polling"


async def test_websocket_that_worked_is_retried_after_the_fallback() -> None:
    """A WebSocket that once worked falls back for 10–30 min only, then is tried again."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    rng = FixedRandom(0.0)  # retry after exactly 600 s of test-clock time
    async with running(push, clock, wakes, rng=rng) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([message(1)])
        await eventually(lambda: listener.stats.messages == 1)
        push.ws_refuse = True
        push.drop()
        await eventually(lambda: len(push.lp_queries) >= 1)
        push.ws_refuse = False
        await eventually(lambda: len(push.connections) == 2)
    assert (600.0, 1800.0) in rng.asked
    assert listener.stats.transport == "websocket"


async def test_wrong_channel_close_4010_fetches_the_config_again() -> None:
    """Close code 4010 (channel refused) makes the next attempt use a fresh config."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.ws_close_code = 4010
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.ws_queries) >= 1)
        push.ws_close_code = None
        await eventually(lambda: len(push.connections) == 1)
    assert push.config_calls == len(push.ws_queries)  # one fresh config per attempt
    assert list(listener.stats.delays)[:1] == [0.1]
    assert listener.stats.transport == "websocket"


async def test_long_poll_400_fetches_the_config_again() -> None:
    """A long poll answered 400 (channel refused) fetches the config again."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.websocket = False
    push.lp_status = 400
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.lp_queries) >= 3)
    assert push.config_calls >= 3
    assert list(listener.stats.delays)[:2] == [0.1, 15.0]


async def test_unusable_config_climbs_the_ladder() -> None:
    """A config without channels is logged and retried on the ladder, not fatal."""
    clock, wakes = ScaledClock(scale=1e-4), Wakes()
    calls = 0

    async def no_channels() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"result": {"server": {"version": 4, "websocket": "ws://x/"}, "channels": {}}}

    push = FakePush()
    async with push.http_client() as http:
        listener = PullListener(
            get_config=no_channels, connector_id=OURS, wake=wakes, http=http, clock=clock
        )
        task = asyncio.create_task(listener.run())
        await eventually(lambda: calls >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert list(listener.stats.delays)[:2] == [0.1, 15.0]
    assert listener.stats.connects == 0


async def test_long_poll_read_timeouts_just_poll_again() -> None:
    """Long polls held past the client's limit are asked again: no failure, no delay."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.websocket = False
    push.lp_timeouts = 3
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: listener.stats.connects == 1)
        push.lp_respond([offline(1, OURS)])
        await eventually(lambda: wakes.count("push") == 1)
    assert len(push.lp_queries) >= 4
    assert listener.stats.failures == 0
    assert list(listener.stats.delays) == []


async def test_long_poll_304_moves_the_cursor() -> None:
    """A 304 long-poll answer with Last-Message-Id moves the mid sent next time."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.websocket = False
    push.last_mid = "12345"
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.lp_queries) >= 2)
    assert push.lp_queries[1]["mid"] == ["12345"]
    assert list(listener.stats.delays) == []  # no failure: no delay


async def test_version_5_is_logged_and_not_connected(caplog: pytest.LogCaptureFixture) -> None:
    """A version-5 server is reported as unsupported, never connected, re-checked later."""
    push, clock, wakes = FakePush(version=5), ScaledClock(scale=1e-5), Wakes()
    with caplog.at_level(logging.ERROR, logger="connector.pull"):
        async with running(push, clock, wakes, unsupported_recheck=3600.0) as listener:
            await eventually(lambda: push.config_calls >= 2)
    assert listener.stats.state == "unsupported"
    assert push.ws_queries == [] and push.lp_queries == []
    assert "version 5" in caplog.text and "not supported" in caplog.text
    assert "shared.sig" not in caplog.text


async def test_logs_never_contain_channel_ids(caplog: pytest.LogCaptureFixture) -> None:
    """Connection and failure logs name the host only, never channel ids."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    push.ws_refuse = True
    with caplog.at_level(logging.DEBUG, logger="connector.pull"):
        async with running(push, clock, wakes):
            await eventually(lambda: len(push.lp_queries) >= 1)
    assert "127.0.0.1" in caplog.text
    assert "shared.sig" not in caplog.text and "portal-1" not in caplog.text


def test_custom_ladder_is_used() -> None:
    """A ladder passed in replaces the default one."""
    listener = PullListener(
        get_config=FakePush().get_config,
        connector_id=OURS,
        wake=lambda _r: None,
        http=None,  # type: ignore[arg-type]
        ladder=Ladder(((1, 2.0),)),
    )
    assert listener._backoff.ladder.delay(5) == 2.0
