"""The Push&Pull WebSocket endpoint over a real socket: framing, messages, replay, refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.emulator.pull_harness import APP, OTHER_APP, Served, messages_of, serve


@pytest.fixture
def served() -> Iterator[Served]:
    with serve() as s:
        yield s


async def recv(ws: ClientConnection) -> str:
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, str)
    return frame


async def closed_code(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server ends the connection; (close code seen, reason or None)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


async def test_v4_json_frame_carries_a_full_message_object(served: Served) -> None:
    """Version 4 + format=json: a JSON array whose objects have every documented field."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        sent = served.hub.publish(APP, "application", "ping", {"n": 1})
        frame = await recv(ws)
    data = json.loads(frame)
    assert isinstance(data, list) and len(data) == 1
    msg = data[0]
    shared_public = cfg["channels"]["shared"]["id"].split(".")[0]
    assert msg["id"] == sent.id
    assert msg["mid"] == sent.mid and len(msg["mid"]) == 26
    assert msg["channel"] == shared_public
    assert msg["tag"] == "1"
    assert parsedate_to_datetime(msg["time"]).timestamp() == int(sent.created)
    text = msg["text"]
    assert (text["module_id"], text["command"], text["params"]) == ("application", "ping", {"n": 1})
    extra = text["extra"]
    assert extra["server_time_unix"] == int(sent.created)
    assert extra["channel"] == shared_public
    assert {"server_time", "server_time_ago", "server_name", "revision", "revisionMobile"} <= set(
        extra
    )


async def test_v3_uses_nginx_markers_and_concatenates(served: Served) -> None:
    """Version 3: #!NGINXNMS!#{json}#!NGINXNME!#, several messages in one frame."""
    served.hub.set_version(3)
    cfg = served.config()
    assert cfg["server"]["version"] == 3
    first = served.hub.publish(APP, "application", "one", {})
    served.hub.publish(APP, "application", "two", {})
    served.hub.publish(APP, "application", "three", {})
    async with connect(served.ws_url(cfg, mid=first.mid)) as ws:
        frame = await recv(ws)
    assert frame.startswith("#!NGINXNMS!#") and frame.endswith("#!NGINXNME!#")
    assert frame.count("#!NGINXNMS!#") == 2
    assert [m["text"]["command"] for m in messages_of(frame)] == ["two", "three"]


async def test_v4_without_format_json_falls_back_to_nginx(served: Served) -> None:
    """Version 4 without format=json answers in the NGINX text framing."""
    cfg = served.config()
    async with connect(served.ws_url(cfg, fmt=None)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "plain", {})
        frame = await recv(ws)
    assert frame.startswith("#!NGINXNMS!#")
    assert messages_of(frame)[0]["text"]["command"] == "plain"


async def test_event_offline_for_two_connectors_in_one_message(served: Served) -> None:
    """notify_offline publishes one event_offline with one params entry per connector."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.notify_offline(APP, {"OneC": 3, "erp": 1})
        messages = messages_of(await recv(ws))
    assert len(messages) == 1
    text = messages[0]["text"]
    assert text["module_id"] == "rest" and text["command"] == "event_offline"
    assert text["params"] == [
        {"connector_id": "OneC", "count": 3},
        {"connector_id": "erp", "count": 1},
    ]


async def test_history_replay_by_mid_after_a_drop_is_one_time(served: Served) -> None:
    """After a 1006 drop, reconnecting with the last mid replays what was missed, once."""
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "seen", {})
        last_mid = messages_of(await recv(ws))[-1]["mid"]
        served.hub.drop_connections(1006)
        assert (await closed_code(ws))[0] == 1006
    served.hub.publish(APP, "application", "missed-1", {})
    served.hub.publish(APP, "application", "missed-2", {})
    async with connect(served.ws_url(cfg, mid=last_mid)) as ws:
        replay = messages_of(await recv(ws))
    assert [m["text"]["command"] for m in replay] == ["missed-1", "missed-2"]
    async with connect(served.ws_url(cfg, mid=last_mid)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "live", {})
        assert [m["text"]["command"] for m in messages_of(await recv(ws))] == ["live"]


async def test_replay_can_repeat_when_switch_is_off(served: Served) -> None:
    """With replay_once off, the same mid replays the same history again."""
    served.hub.settings.replay_once = False
    cfg = served.config()
    first = served.hub.publish(APP, "application", "a", {})
    served.hub.publish(APP, "application", "b", {})
    for _ in range(2):
        async with connect(served.ws_url(cfg, mid=first.mid)) as ws:
            assert [m["text"]["command"] for m in messages_of(await recv(ws))] == ["b"]


@pytest.mark.parametrize("tamper", ["unknown", "signature", "client_id", "malformed"])
async def test_bad_channel_or_client_id_is_closed_with_4010(served: Served, tamper: str) -> None:
    """Unknown ids, a wrong signature, a wrong clientId or garbage close with 4010."""
    cfg = served.config()
    shared = cfg["channels"]["shared"]["id"]
    public, sig = shared.split(".")
    query = {
        "unknown": f"CHANNEL_ID={'0' * 32}.{sig}&clientId={cfg['server']['clientId']}",
        "signature": f"CHANNEL_ID={public}.{'f' * 40}&clientId={cfg['server']['clientId']}",
        "client_id": f"CHANNEL_ID={shared}&clientId=nope",
        "malformed": f"CHANNEL_ID=0d875ab13a17a97fc2f5&clientId={cfg['server']['clientId']}",
    }[tamper]
    async with connect(f"ws://127.0.0.1:{served.port}/subws/?{query}&format=json") as ws:
        code, _ = await closed_code(ws)
    assert code == 4010
    assert served.hub.connections() == []


async def test_url_encoded_private_and_shared_channels(served: Served) -> None:
    """Both channels joined by / with %3A and %2F; a private message is delivered."""
    cfg = served.config()
    channel_id = quote(
        f"{cfg['channels']['private']['id']}/{cfg['channels']['shared']['id']}", safe=""
    )
    assert "%3A" in channel_id and "%2F" in channel_id
    url = (
        f"{cfg['server']['websocket_secure']}?CHANNEL_ID={channel_id}"
        f"&clientId={cfg['server']['clientId']}&format=json"
    )
    async with connect(url) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "private-one", {}, channel_type="private")
        message = messages_of(await recv(ws))[0]
    assert message["channel"] == cfg["channels"]["private"]["public_id"].split(".")[0]
    assert served.hub.published(APP)[-1].channel_type == "private"


async def test_other_apps_messages_are_not_delivered(served: Served) -> None:
    """A connection only receives its own channels' messages."""
    cfg = served.config()
    served.config(OTHER_APP)
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(OTHER_APP, "application", "not-yours", {})
        served.hub.publish(APP, "application", "yours", {})
        assert [m["text"]["command"] for m in messages_of(await recv(ws))] == ["yours"]


async def test_extra_placement_switch_moves_extra_beside_text(served: Served) -> None:
    """set_extra_placement('top') puts extra next to text instead of inside it."""
    served.hub.set_extra_placement("top")
    cfg = served.config()
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        served.hub.publish(APP, "application", "x", {})
        message: dict[str, Any] = messages_of(await recv(ws))[0]
    assert "extra" not in message["text"]
    assert message["extra"]["channel"] == message["channel"]


async def test_version_5_answers_json_rpc(served: Served) -> None:
    """Version 5 reports itself in config and frames messages as JSON-RPC incoming.message."""
    served.hub.set_version(5)
    cfg = served.config()
    assert cfg["server"]["version"] == 5
    async with connect(served.ws_url(cfg)) as ws:
        await served.hub.wait_for_connections(1)
        sent = served.hub.publish(APP, "application", "rpc", {"k": "v"})
        call = json.loads(await recv(ws))
    assert call["jsonrpc"] == "2.0" and call["method"] == "incoming.message"
    assert call["params"]["mid"] == sent.mid
    assert call["params"]["body"]["command"] == "rpc"
    assert call["params"]["body"]["params"] == {"k": "v"}


async def test_through_the_emulator_app_one_ui_change_notifies_two_connectors() -> None:
    """Via the real app: config.get over REST, a WebSocket on its URL, and one UI add
    with two offline bindings (two connectors) → one event_offline listing both."""
    emulator = Emulator()
    token = emulator.install_app(scopes=("crm", "pull"))["access_token"]
    with ServerThread(emulator) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for connector in ("OneC", "erp"):
                bound = await client.post(
                    "/rest/event.bind.json",
                    data={
                        "auth": token,
                        "auth_connector": connector,
                        "event": "ONCRMCOMPANYADD",
                        "event_type": "offline",
                    },
                )
                assert bound.status_code == 200, bound.text
            answer = await client.get(
                "/rest/pull.application.config.get.json", params={"auth": token}
            )
        cfg = answer.json()["result"]
        assert cfg["server"]["websocket_secure"] == f"ws://127.0.0.1:{server.port}/subws/"
        url = (
            f"{cfg['server']['websocket_secure']}?CHANNEL_ID={cfg['channels']['shared']['id']}"
            f"&clientId={cfg['server']['clientId']}&format=json"
        )
        async with connect(url) as ws:
            await emulator.default_portal.pull.wait_for_connections(1)
            emulator.ui_add("company", {"TITLE": "Acme"})
            messages = messages_of(await recv(ws))
    assert len(messages) == 1
    assert messages[0]["text"]["command"] == "event_offline"
    assert sorted(messages[0]["text"]["params"], key=lambda p: p["connector_id"]) == [
        {"connector_id": "OneC", "count": 1},
        {"connector_id": "erp", "count": 1},
    ]
