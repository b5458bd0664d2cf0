"""Digest §11.1 "Scenario tests" that the emulator had no end-to-end test for: a token
that expires in the middle of a drain, a 503 burst during a drain, a server_restart
storm followed by channel expiry, and a missed push that only a fallback poll finds.

The other scenario lines are proved elsewhere (docs/emulator-checklist.md lists where).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connector.emulator.app import Emulator
from connector.emulator.pull import PullHub
from connector.emulator.server import ServerThread
from tests.emulator.pull_harness import messages_of

CONNECTOR = "erp"


async def rest(http: httpx.AsyncClient, token: str, method: str, **params: Any) -> httpx.Response:
    return await http.post(
        f"/rest/{method}.json", json={"auth": token, "auth_connector": CONNECTOR, **params}
    )


async def refresh(http: httpx.AsyncClient, app: dict[str, Any], token: str) -> dict[str, Any]:
    r = await http.post(
        "/oauth/token/",
        data={
            "grant_type": "refresh_token",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "refresh_token": token,
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def bind(http: httpx.AsyncClient, token: str, event: str = "ONCRMCOMPANYADD") -> None:
    r = await rest(http, token, "event.bind", event=event, event_type="offline")
    assert r.json() == {**r.json(), "result": True}


def locks(emulator: Emulator) -> list[tuple[str, str]]:
    """(ID, PROCESS_ID) of every queue record, in ID order."""
    return [(row["ID"], row["PROCESS_ID"]) for row in emulator.queue_state()]


# ---- token expiry mid-drain -----------------------------------------------------------


async def test_token_expires_in_the_middle_of_a_drain(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """get(clear=0) with one token; the token expires before clear: clear answers 401
    expired_token and deletes nothing (the records stay locked under the process);
    after one refresh the same process_id clears them. The lock belongs to the
    process, not to the token."""
    token = app_creds["access_token"]
    await bind(http, token)
    for n in range(3):
        emulator.ui_add("company", {"TITLE": f"C{n}"})
    batch = (await rest(http, token, "event.offline.get", clear=0)).json()["result"]
    pid = batch["process_id"]
    assert len(batch["events"]) == 3
    emulator.advance(3601)
    r = await rest(http, token, "event.offline.clear", process_id=pid)
    assert (r.status_code, r.json()["error"]) == (401, "expired_token")
    assert {p for _, p in locks(emulator)} == {pid} and len(locks(emulator)) == 3
    fresh = await refresh(http, app_creds, app_creds["refresh_token"])
    reread = await rest(http, fresh["access_token"], "event.offline.get", process_id=pid, clear=0)
    assert [e["ID"] for e in reread.json()["result"]["events"]] == [
        e["ID"] for e in batch["events"]
    ]
    ids = [e["ID"] for e in batch["events"]]
    r = await rest(http, fresh["access_token"], "event.offline.clear", process_id=pid, id=ids)
    assert r.json()["result"] is True
    assert locks(emulator) == []


# ---- 503 bursts --------------------------------------------------------------------------


async def test_503_burst_during_a_drain_changes_nothing(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drain hammering a full bucket: every 503 QUERY_LIMIT_EXCEEDED leaves the queue
    exactly as it was (the request did not run: no record locked or deleted); waiting
    (test clock) lets it finish, and every record is delivered exactly once."""
    token = app_creds["access_token"]
    await bind(http, token)
    for n in range(9):
        emulator.ui_add("company", {"TITLE": f"C{n}"})
    emulator.set_limits(burst=3, rate=2, reset=True)
    now = [emulator.clock.now()]
    monkeypatch.setattr(emulator.clock, "now", lambda: now[0])
    delivered: list[str] = []
    rejected = 0
    pid: str | None = None
    for _ in range(100):
        before = locks(emulator)
        if pid is None:
            r = await rest(http, token, "event.offline.get", clear=0, limit=2)
        else:
            r = await rest(http, token, "event.offline.clear", process_id=pid)
        if r.status_code == 503:
            assert r.json()["error"] == "QUERY_LIMIT_EXCEEDED"
            assert locks(emulator) == before
            rejected += 1
            now[0] += 1.0
            continue
        assert r.status_code == 200, r.text
        if pid is not None:
            pid = None
            continue
        result = r.json()["result"]
        if not result["events"]:
            break
        delivered.extend(e["ID"] for e in result["events"])
        pid = result["process_id"]
    assert rejected > 0
    assert sorted(delivered, key=int) == [str(n) for n in range(1, 10)]
    assert locks(emulator) == []


# ---- Push&Pull: server_restart storm, then channel expiry -------------------------------------


async def frames_until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it ends the connection."""
    seen: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed):
        while True:
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(frame, str)
            seen.extend(messages_of(frame))
    return seen


async def connections_become(pull: PullHub, count: int) -> None:
    """Wait (at most 5 s) until exactly ``count`` connections are live."""
    async with asyncio.timeout(5):
        await pull._wait_until(lambda: len(pull.connections()) == count)


def ws_url(
    cfg: dict[str, Any], mid: str | None = None, types: tuple[str, ...] = ("shared", "private")
) -> str:
    query = {
        "CHANNEL_ID": "/".join(cfg["channels"][t]["id"] for t in types),
        "clientId": cfg["server"]["clientId"],
        "format": "json",
    }
    if mid:
        query["mid"] = mid
    return f"{cfg['server']['websocket_secure']}?{urlencode(query)}"


async def test_server_restart_storm_then_channel_expiry() -> None:
    """Five server_restart commands in a row, each followed by a disconnect (1001): the
    listener reconnects with its last mid every time and never sees a message twice.
    Then 12 h pass (test clock): the access token and the channel have both expired; a
    UI change reopens the channel, the old listener is told to move (channel_expire
    with new_channel), and on the new channel its mid replays the event_offline it
    missed (shared channel only: the private one has expired too and needs a new
    config). config.get, after a refresh, hands out that same new shared channel."""
    emulator = Emulator()
    app = emulator.install_app(scopes=("crm", "pull"))
    pull = emulator.default_portal.pull
    with ServerThread(emulator) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            await bind(http, app["access_token"])
            answer = await rest(http, app["access_token"], "pull.application.config.get")
            cfg = answer.json()["result"]
            seen: list[int] = []
            mid: str | None = None
            for _ in range(5):
                async with connect(ws_url(cfg, mid)) as ws:
                    await connections_become(pull, 1)
                    emulator.pull_command("server_restart", disconnect=True)
                    got = await frames_until_closed(ws)
                    assert ws.close_code == 1001
                await connections_become(pull, 0)
                assert [m["text"]["command"] for m in got] == ["server_restart"]
                seen.extend(m["id"] for m in got)
                mid = got[-1]["mid"]
            assert len(seen) == len(set(seen)) == 5

            async with connect(ws_url(cfg, mid)) as ws:
                await pull.wait_for_connections(1)
                emulator.advance(12 * 3600 + 1)
                emulator.ui_add("company", {"TITLE": "after the storm"})
                frame = await asyncio.wait_for(ws.recv(), 5)
                [notice] = messages_of(frame)
            assert notice["text"]["command"] == "channel_expire"
            assert notice["text"]["params"]["action"] == "reconnect"
            new_shared = notice["text"]["params"]["new_channel"]
            moved = {**cfg, "channels": {**cfg["channels"], "shared": new_shared}}
            async with connect(ws_url(moved, notice["mid"], ("shared",))) as ws:
                replay = messages_of(await asyncio.wait_for(ws.recv(), 5))
            assert [m["text"]["command"] for m in replay] == ["event_offline"]
            assert replay[0]["text"]["params"] == [{"connector_id": CONNECTOR, "count": 1}]

            stale = await rest(http, app["access_token"], "pull.application.config.get")
            assert stale.json()["error"] == "expired_token"
            fresh = await refresh(http, app, app["refresh_token"])
            again = await rest(http, fresh["access_token"], "pull.application.config.get")
            assert again.json()["result"]["channels"]["shared"]["id"] == new_shared["id"]


# ---- a missed push ---------------------------------------------------------------------------


async def test_missed_push_is_found_only_by_the_fallback_poll() -> None:
    """A change made while no listener is connected publishes its event_offline to
    nobody. A listener that starts afterwards without a saved mid is not told (its long
    poll ends 304, empty); only a poll of the queue finds the record. The connector's
    answer is its safety poll: tests/service/test_worker.py::
    test_without_push_the_safety_poll_drains."""
    emulator = Emulator()
    app = emulator.install_app(scopes=("crm", "pull"))
    pull = emulator.default_portal.pull
    pull.settings.hold_timeout = 0.3
    with ServerThread(emulator) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            token = app["access_token"]
            await bind(http, token)
            cfg = (await rest(http, token, "pull.application.config.get")).json()["result"]
            company = emulator.ui_add("company", {"TITLE": "while nobody listened"})
            assert [m.command for m in pull.published()] == ["event_offline"]
            query = urlencode(
                {
                    "CHANNEL_ID": cfg["channels"]["shared"]["id"],
                    "clientId": cfg["server"]["clientId"],
                    "format": "json",
                }
            )
            long_poll = await http.get(f"{cfg['server']['long_polling_secure']}?{query}")
            assert long_poll.status_code == 304 and long_poll.content == b""
            polled = (await rest(http, token, "event.offline.get")).json()["result"]
    assert [e["EVENT_DATA"] for e in polled["events"]] == [{"FIELDS": {"ID": company}}]
