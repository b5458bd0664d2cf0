"""The Push&Pull listener over WebSocket against a loopback fake push server:
framing, wakes, history by mid, control commands, channel expiry."""

from __future__ import annotations

import asyncio

import pytest

from tests.adapters.pull_fakes import (
    OURS,
    FakePush,
    FixedRandom,
    ScaledClock,
    Wakes,
    control,
    eventually,
    message,
    offline,
    running,
)


async def test_websocket_v4_wakes_for_our_connector_only() -> None:
    """A v4 JSON frame with event_offline wakes for our id, not for another connector."""
    push, clock, wakes = FakePush(version=4), ScaledClock(), Wakes()
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([offline(1, "OneC")])
        await push.send([offline(2, "someone", OURS), message(3)])
        await eventually(lambda: listener.stats.messages == 3)
    assert wakes.count("push") == 1
    assert listener.stats.wakes == 1
    query = push.ws_queries[0]
    assert query["CHANNEL_ID"] == ["shared.sig/private.sig"]
    assert query["clientId"] == ["portal-1"]
    assert query["format"] == ["json"]


async def test_websocket_v3_framing() -> None:
    """A version-3 server: no format=json in the URL, NGINX-marker frames understood."""
    push, clock, wakes = FakePush(version=3), ScaledClock(), Wakes()
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([message(1), offline(2, OURS)])
        await push.send_raw(
            '#!NGINXNMS#{"id": 3, "text": {"module_id": "rest", '
            '"command": "event_offline", "params": [{"connector_id": "erp"}]}}'
        )
        await eventually(lambda: listener.stats.messages == 3)
    assert wakes.count("push") == 2
    assert "format" not in push.ws_queries[0]


async def test_box_server_without_client_id() -> None:
    """No clientId in the config means none in the URL."""
    push, clock, wakes = FakePush(), ScaledClock(), Wakes()
    push.client_id = None
    async with running(push, clock, wakes):
        await eventually(lambda: len(push.connections) == 1)
    assert "clientId" not in push.ws_queries[0]


async def test_connect_emits_wake_and_pokes_on_connect() -> None:
    """Every (re)connection wakes the drainer and calls on_connect (safety poll poke)."""
    push, clock, wakes = FakePush(), ScaledClock(), Wakes()
    pokes: list[int] = []
    async with running(push, clock, wakes, on_connect=lambda: pokes.append(1)) as listener:
        await eventually(lambda: len(push.connections) == 1)
        push.drop()
        await eventually(lambda: len(push.connections) == 2)
        await eventually(lambda: listener.stats.connects == 2)
    assert wakes.count("connected") == 2
    assert pokes == [1, 1]


async def test_history_replay_by_mid_after_a_drop() -> None:
    """After a drop the listener reconnects within 100 ms (ladder step 1) with the last mid."""
    push, clock, wakes = FakePush(), ScaledClock(), Wakes()
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([message(1), message(2)])
        await eventually(lambda: listener.stats.messages == 2)
        push.drop()
        await eventually(lambda: len(push.connections) == 2)
        await push.send([message(2), offline(3, OURS)])  # the replay repeats mid 2
        await eventually(lambda: listener.stats.messages == 3)
    assert "mid" not in push.ws_queries[0]
    assert push.ws_queries[1]["mid"] == [message(2)["mid"]]
    assert list(listener.stats.delays) == [0.1]
    assert listener.stats.duplicates == 1
    assert listener.cursor.mid == message(3)["mid"]
    assert wakes.count("push") == 1


async def test_version_2_resumes_by_tag_and_time() -> None:
    """A version-2 server: the reconnect carries tag and time, not mid."""
    push, clock, wakes = FakePush(version=2), ScaledClock(), Wakes()
    old = message(1)
    old.update(tag="672", time="Thu, 29 Jun 2017 09:50:16 GMT")
    del old["mid"]
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([old])
        await eventually(lambda: listener.stats.messages == 1)
        push.drop()
        await eventually(lambda: len(push.connections) == 2)
    assert push.ws_queries[1]["tag"] == ["672"]
    assert push.ws_queries[1]["time"] == ["Thu, 29 Jun 2017 09:50:16 GMT"]
    assert "mid" not in push.ws_queries[1]


async def test_malformed_frames_are_counted_not_fatal() -> None:
    """Rejected and skipped frames are counted; the connection keeps working."""
    push, clock, wakes = FakePush(version=3), ScaledClock(), Wakes()
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send_raw("not a frame")
        await push.send_raw(b"\xff\xfe")
        await push.send_raw("#!NGINXNMS!#{broken#!NGINXNME!#")
        await push.send([offline(1, OURS)])
        await eventually(lambda: wakes.count("push") == 1)
    assert listener.stats.frames_rejected == 2
    assert listener.stats.frames_skipped == 1
    assert listener.stats.connects == 1


async def test_channel_expire_reconnect_swaps_the_channel() -> None:
    """channel_expire/reconnect replaces the channel and reconnects without config.get."""
    push, clock, wakes = FakePush(), ScaledClock(), Wakes()
    params = {
        "action": "reconnect",
        "channel": {"id": "shared.sig", "type": "shared"},
        "new_channel": {"id": "shared2.sig", "type": "shared", "end": "2099-01-01T00:00:00+00:00"},
    }
    async with running(push, clock, wakes) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([control("channel_expire", params)])
        await eventually(lambda: len(push.connections) == 2)
    assert push.ws_queries[1]["CHANNEL_ID"] == ["shared2.sig/private.sig"]
    assert push.config_calls == 1
    assert listener.stats.controls == {"ChannelExpire": 1}
    assert list(listener.stats.delays) == []


async def test_channel_expire_get_config_fetches_again() -> None:
    """channel_expire/get_config disconnects, fetches the config and reconnects at once."""
    push, clock, wakes = FakePush(), ScaledClock(), Wakes()
    async with running(push, clock, wakes):
        await eventually(lambda: len(push.connections) == 1)
        push.channel_ids = ["fresh.sig"]
        await push.send([control("channel_expire", {"action": "get_config"})])
        await eventually(lambda: len(push.connections) == 2)
    assert push.config_calls == 2
    assert push.ws_queries[1]["CHANNEL_ID"] == ["fresh.sig"]


@pytest.mark.parametrize(
    ("command", "name"), [("config_expire", "ConfigExpire"), ("server_restart", "ServerRestart")]
)
async def test_config_expire_and_server_restart_wait_10_to_120_s(command: str, name: str) -> None:
    """config_expire/server_restart: a random 10–120 s wait, a new config, a reconnect."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-4), Wakes()
    rng = FixedRandom(0.25)
    async with running(push, clock, wakes, rng=rng) as listener:
        await eventually(lambda: len(push.connections) == 1)
        await push.send([control(command)])
        await eventually(lambda: len(push.connections) == 2)
    assert (10.0, 120.0) in rng.asked
    assert list(listener.stats.delays) == [10.0 + 110.0 * 0.25]
    assert push.config_calls == 2
    assert listener.stats.controls == {name: 1}


async def test_channels_inside_the_margin_are_renewed_at_their_end() -> None:
    """Channels that end within the renewal margin are renewed once they end (+1 s),
    not fetched again in a loop."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-3), Wakes()
    push.channel_lifetime = 100.0
    async with running(push, clock, wakes, renew_margin=300.0) as listener:
        await eventually(lambda: listener.stats.connects == 2)
    assert 60.0 < clock.sleeps[0] <= 101.0  # the end (+1 s), not min_session
    assert push.config_calls == 2


async def test_channels_already_ended_get_a_minimum_session() -> None:
    """A config whose channels have already ended is used for ``min_session`` seconds."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-3), Wakes()
    push.channel_lifetime = -10.0
    async with running(push, clock, wakes, min_session=60.0) as listener:
        await eventually(lambda: listener.stats.connects == 2)
    assert 1.0 < clock.sleeps[0] <= 60.0
    assert push.config_calls == 2


async def test_channel_expiry_on_the_test_clock_renews_before_the_end() -> None:
    """With channels ending in 400 s and a 300 s margin, the config is fetched again
    after about 100 s of test-clock time and the listener reconnects on the new channel."""
    push, clock, wakes = FakePush(), ScaledClock(scale=1e-3), Wakes()
    push.channel_lifetime = 400.0
    async with running(push, clock, wakes, renew_margin=300.0, min_session=1.0):
        await eventually(lambda: len(push.connections) == 1)
        push.channel_ids = ["renewed.sig"]
        await eventually(lambda: len(push.connections) == 2)
    assert push.config_calls == 2
    assert push.ws_queries[1]["CHANNEL_ID"] == ["renewed.sig"]
    # the first session was given end − margin − (time spent connecting) ≤ 100 s
    assert 1.0 < clock.sleeps[0] <= 100.0


async def test_asyncio_event_is_a_wake_sink() -> None:
    """An asyncio.Event given as the sink is set on a wake."""
    push, clock, event = FakePush(), ScaledClock(), asyncio.Event()
    async with running(push, clock, event):
        await eventually(lambda: len(push.connections) == 1)
        event.clear()
        await push.send([offline(1, OURS)])
        await asyncio.wait_for(event.wait(), timeout=5)
