"""The long-polling endpoint over real HTTP: hold, 304 timeout, delivery, cursor, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.emulator.pull_harness import APP, Served, messages_of, serve


@pytest.fixture
def served() -> Iterator[Served]:
    with serve() as s:
        s.hub.settings.hold_timeout = 0.3
        yield s


async def test_hold_timeout_answers_304_with_last_message_id(served: Served) -> None:
    """Nothing to deliver: after the hold, 304 + Expires marker + Last-Message-Id."""
    cfg = served.config()
    sent = served.hub.publish(APP, "application", "old", {})
    async with httpx.AsyncClient() as client:
        response = await client.get(served.lp_url(cfg, mid=sent.mid))
    assert response.status_code == 304
    assert response.headers["Expires"] == "Thu, 01 Jan 1973 11:11:01 GMT"
    assert response.headers["Last-Message-Id"] == sent.mid


async def test_message_during_hold_is_answered_as_json_array(served: Served) -> None:
    """A message published while the request is held comes back as the v4 JSON array."""
    served.hub.settings.hold_timeout = 10
    cfg = served.config()
    async with httpx.AsyncClient() as client:
        pending = asyncio.ensure_future(client.get(served.lp_url(cfg)))
        async with asyncio.timeout(5):
            await served.hub.wait_for_connections(1, kind="long_poll")
        served.hub.notify_offline(APP, {"OneC": 1})
        response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, list)
    assert body[0]["text"]["command"] == "event_offline"
    assert served.hub.connections() == []


async def test_missed_messages_are_answered_at_once_in_v3_framing(served: Served) -> None:
    """With a mid behind the history, the answer is immediate, NGINX-framed, in order."""
    served.hub.set_version(3)
    cfg = served.config()
    first = served.hub.publish(APP, "application", "a", {})
    served.hub.publish(APP, "application", "b", {})
    served.hub.publish(APP, "application", "c", {})
    async with httpx.AsyncClient() as client:
        response = await client.get(served.lp_url(cfg, mid=first.mid))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.count("#!NGINXNMS!#") == 2
    assert [m["text"]["command"] for m in messages_of(response.text)] == ["b", "c"]


async def test_cursor_walks_the_history(served: Served) -> None:
    """Reconnecting with the last mid of each answer yields the next messages only."""
    cfg = served.config()
    start = served.hub.publish(APP, "application", "start", {})
    served.hub.publish(APP, "application", "one", {})
    async with httpx.AsyncClient() as client:
        first = (await client.get(served.lp_url(cfg, mid=start.mid))).json()
        served.hub.publish(APP, "application", "two", {})
        second = (await client.get(served.lp_url(cfg, mid=first[-1]["mid"]))).json()
    assert [m["text"]["command"] for m in first] == ["one"]
    assert [m["text"]["command"] for m in second] == ["two"]


@pytest.mark.parametrize("query", ["", "CHANNEL_ID=abc", "CHANNEL_ID={shared}&clientId=bad"])
async def test_bad_query_answers_400(served: Served, query: str) -> None:
    """A missing/garbled channel id or a wrong clientId answers HTTP 400."""
    cfg = served.config()
    query = query.format(shared=cfg["channels"]["shared"]["id"])
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{served.http}/sub/?{query}")
    assert response.status_code == 400


async def test_expired_channel_answers_400_until_config_is_fetched(served: Served) -> None:
    """After 12 h on the test clock the old channel is refused; the fresh one works."""
    cfg = served.config()
    served.hub.expire_channels()
    async with httpx.AsyncClient() as client:
        refused = await client.get(served.lp_url(cfg))
        fresh = await client.get(served.lp_url(served.config()))
    assert refused.status_code == 400
    assert refused.text == "channel expired"
    assert fresh.status_code == 304


async def test_dropped_long_poll_request_sees_a_cut_connection(served: Served) -> None:
    """drop_connections aborts a held long-poll request: no HTTP answer at all."""
    served.hub.settings.hold_timeout = 10
    cfg = served.config()
    async with httpx.AsyncClient() as client:
        pending = asyncio.ensure_future(client.get(served.lp_url(cfg)))
        async with asyncio.timeout(5):
            await served.hub.wait_for_connections(1, kind="long_poll")
        assert served.hub.drop_connections(kind="long_poll") == 1
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(pending, 5)
