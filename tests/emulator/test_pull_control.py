"""Push&Pull control commands and fault injection, seen from a real client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connector.emulator.pull_channels import CHANNEL_TTL
from tests.emulator.pull_harness import APP, OTHER_APP, Served, messages_of, serve


@pytest.fixture
def served() -> Iterator[Served]:
    with serve() as s:
        s.hub.settings.hold_timeout = 0.3
        yield s


async def next_messages(ws: ClientConnection) -> list[dict[str, object]]:
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, str)
    return messages_of(frame)


async def end_of(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server ends the connection; return the closing exception."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return info.value


async def refused_close_code(served: Served, url: str) -> int | None:
    async with connect(url) as ws:
        await end_of(ws)
        return ws.close_code


async def test_channel_expire_reconnect_hands_over_a_new_channel(served: Served) -> None:
    """channel_expire/reconnect carries new_channel; the old id is refused, the new works."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.send_channel_expire(APP, action="reconnect")
        text = (await next_messages(ws))[0]["text"]
    assert isinstance(text, dict)
    assert (text["module_id"], text["command"]) == ("pull", "channel_expire")
    params = text["params"]
    assert params["action"] == "reconnect"
    assert params["channel"] == {"id": cfg["channels"]["shared"]["id"], "type": "shared"}
    new = params["new_channel"]
    assert new["type"] == "shared" and new["id"] != cfg["channels"]["shared"]["id"]
    span = datetime.fromisoformat(new["end"]) - datetime.fromisoformat(new["start"])
    assert span.total_seconds() == CHANNEL_TTL
    assert await refused_close_code(served, served.ws_url(cfg)) == 4010
    cfg["channels"]["shared"] = new
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "after", {})
        assert (await next_messages(ws))[0]["text"]["command"] == "after"  # type: ignore[index]
    assert served.config()["channels"]["shared"]["id"] == new["id"]


async def test_channel_expire_get_config_makes_config_return_a_new_channel(served: Served) -> None:
    """channel_expire/get_config has no new_channel; config.get then gives a new id."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.send_channel_expire(APP, action="get_config")
        params = (await next_messages(ws))[0]["text"]["params"]  # type: ignore[index]
    assert params["action"] == "get_config" and "new_channel" not in params
    assert served.config()["channels"]["shared"]["id"] != cfg["channels"]["shared"]["id"]


async def test_config_expire_reaches_every_app_and_bumps_timestamp(served: Served) -> None:
    """config_expire (params {}) goes to each app's shared channel; config_timestamp moves."""
    cfg, other = served.config(), served.config(OTHER_APP)
    before = cfg["server"]["config_timestamp"]
    served.portal.clock.advance(60)
    async with connect(served.ws_url(cfg)) as ws, connect(served.ws_url(other)) as ws2:
        await served.hub.wait_for_connections(2)
        served.hub.send_config_expire()
        texts = [(await next_messages(w))[0]["text"] for w in (ws, ws2)]
    for text in texts:
        assert text == {**text, "module_id": "pull", "command": "config_expire", "params": {}}
    assert served.config()["server"]["config_timestamp"] > before


async def test_server_restart_then_disconnect(served: Served) -> None:
    """server_restart is delivered first, then the connection closes with 1001."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.send_server_restart(disconnect=True)
        text = (await next_messages(ws))[0]["text"]
        closed = await end_of(ws)
    assert text["command"] == "server_restart"  # type: ignore[index]
    assert closed.rcvd is not None and closed.rcvd.code == 1001


async def test_channel_expiry_on_the_test_clock(served: Served) -> None:
    """A channel works until 12 h pass on the test clock, then it is refused (4010)."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
    advanced = served.hub.expire_channels()
    assert advanced >= CHANNEL_TTL - 5
    async with connect(served.ws_url(cfg)) as ws:
        await end_of(ws)
        assert (ws.close_code, ws.close_reason) == (4010, "channel expired")
    async with connect(served.ws_url(served.config())) as ws:
        assert await served.hub.wait_for_connections(1) is None


async def test_drop_with_1006_sends_no_close_frame(served: Served) -> None:
    """1006: the TCP connection is cut, the client sees no close frame."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        assert served.hub.drop_connections(1006) == 1
        closed = await end_of(ws)
        assert ws.close_code == 1006
    assert closed.rcvd is None
    assert served.hub.stats["abort_fallback"] == 0


async def test_drop_with_1008_sends_a_close_frame(served: Served) -> None:
    """1008: a proper close frame with code 1008."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.drop_connections(1008, "policy")
        closed = await end_of(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "policy")


async def test_drop_only_targets_the_given_app(served: Served) -> None:
    """drop_connections(client_id=...) leaves other apps' connections alive."""
    cfg, other = served.config(), served.config(OTHER_APP)
    async with connect(served.ws_url(cfg)) as ws, connect(served.ws_url(other)) as ws2:
        await served.hub.wait_for_connections(2)
        assert served.hub.drop_connections(1008, client_id=OTHER_APP) == 1
        await end_of(ws2)
        served.hub.publish(APP, "application", "still-here", {})
        assert (await next_messages(ws))[0]["text"]["command"] == "still-here"  # type: ignore[index]


@pytest.mark.parametrize("status", [403, 503])
async def test_refused_websocket_leaves_long_polling_working(served: Served, status: int) -> None:
    """refuse_websocket answers the handshake with HTTP status; long polling still works."""
    cfg = served.config()
    served.hub.refuse_websocket(status)
    with pytest.raises(InvalidStatus) as info:
        async with connect(served.ws_url(cfg)):
            pass
    assert info.value.response.status_code == status
    async with httpx.AsyncClient() as client:
        assert (await client.get(served.lp_url(cfg))).status_code == 304
    served.hub.allow_websocket()
    async with connect(served.ws_url(cfg)):
        await served.hub.wait_for_connections(1, kind="websocket")
    assert served.hub.stats["websocket_refused"] == 1


async def test_refusal_without_status_drops_the_handshake(served: Served) -> None:
    """refuse_websocket(None) cuts the TCP connection before any HTTP answer."""
    served.hub.refuse_websocket(None)
    with pytest.raises(Exception) as info:
        async with connect(served.ws_url(served.config()), open_timeout=5):
            pass
    assert not isinstance(info.value, InvalidStatus | TimeoutError)


async def test_stalled_delivery_holds_messages_until_released(served: Served) -> None:
    """set_stall('delivery'): the socket stays open but silent; release sends the backlog."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.set_stall("delivery")
        served.hub.publish(APP, "application", "held-1", {})
        served.hub.publish(APP, "application", "held-2", {})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)
        served.hub.set_stall(None)
        got: list[object] = []
        while len(got) < 2:
            got += [m["text"]["command"] for m in await next_messages(ws)]  # type: ignore[index]
    assert got == ["held-1", "held-2"]


async def test_stalled_handshake_times_the_client_out(served: Served) -> None:
    """set_stall('handshake'): the upgrade never completes until the stall ends."""
    cfg = served.config()
    served.hub.set_stall("handshake")
    with pytest.raises(TimeoutError):
        async with connect(served.ws_url(cfg), open_timeout=0.3):
            pass
    served.hub.set_stall(None)
    async with connect(served.ws_url(cfg)):
        await served.hub.wait_for_connections(1)


async def test_introspection_lists_connections_and_published(served: Served) -> None:
    """connections() and snapshot() describe live sockets and what was published."""
    cfg = served.config()
    async with connect(served.ws_url(cfg, types=("private", "shared"))):
        await served.hub.wait_for_connections(1)
        [conn] = served.hub.connections()
        served.hub.notify_offline(APP, {"OneC": 1})
        snap = served.hub.snapshot()
    assert conn["kind"] == "websocket" and conn["client_ids"] == [APP]
    assert conn["channel_types"] == ["private", "shared"]
    assert conn["version"] == 4 and conn["format"] == "json"
    assert snap["published"][-1]["command"] == "event_offline"
    assert snap["settings"]["version"] == 4
    assert [m.command for m in served.hub.published(APP, "event_offline")] == ["event_offline"]


async def test_reopening_an_expired_channel_tells_listeners_and_keeps_history(
    served: Served,
) -> None:
    """A push after 12 h reopens the channel: listeners on the old one get
    channel_expire/reconnect, and the new channel replays the push by mid."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "before", {})
        last_mid = (await next_messages(ws))[-1]["mid"]
        served.hub.expire_channels()
        served.hub.notify_offline(APP, {"OneC": 1})
        [notice] = await next_messages(ws)
    text = notice["text"]
    assert isinstance(text, dict) and text["command"] == "channel_expire"
    new = text["params"]["new_channel"]
    assert served.config()["channels"]["shared"]["id"] == new["id"]
    cfg["channels"]["shared"] = new
    async with connect(served.ws_url(cfg, mid=str(last_mid))) as ws:
        replay = await next_messages(ws)
    assert [m["text"]["command"] for m in replay] == ["event_offline"]  # type: ignore[index]
