"""Fakes for the Push&Pull listener tests: a loopback push server, a scaled clock.

The WebSocket side is a real ``websockets`` server on 127.0.0.1 (port 0); the
long-polling side is an ``httpx.MockTransport`` handler with its own message queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from connector.adapters.pull_listener import PullListener
from connector.adapters.pull_wake import WakeSink

OURS = "erp"


class ScaledClock:
    """Virtual time running ``1/scale`` times faster than real time.

    ``sleep(s)`` really sleeps ``s * scale`` seconds and records ``s``; so an hour of
    reconnect ladder takes a fraction of a second and nothing is asserted on real time.
    """

    def __init__(self, scale: float = 1e-3, start: float = 1_700_000_000.0) -> None:
        self.scale = scale
        self.start = start
        self._real0 = time.monotonic()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) / self.scale

    def time(self) -> float:
        return self.start + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(max(0.0, seconds) * self.scale)


class FixedRandom:
    """``uniform`` returning a fixed fraction of the range, recording what was asked."""

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return a + (b - a) * self.fraction


def message(
    n: int,
    module_id: str = "main",
    command: str = "noop",
    params: Any = None,
) -> dict[str, Any]:
    return {
        "id": n,
        "mid": f"{1_452_613_435_000_000_000 + n}",
        "channel": "shared.sig",
        "text": {"module_id": module_id, "command": command, "params": params or {}},
    }


def offline(n: int, *connectors: str) -> dict[str, Any]:
    params = [{"connector_id": c, "count": 1} for c in connectors]
    return message(n, "rest", "event_offline", params)


def frame(messages: list[dict[str, Any]], version: int) -> str:
    """A server frame: JSON array for version ≥ 4, NGINX markers below."""
    if version >= 4:
        return json.dumps(messages)
    return "".join(f"#!NGINXNMS!#{json.dumps(m)}#!NGINXNME!#" for m in messages)


class FakePush:
    """A push server: ``pull.application.config.get`` answers, WebSocket and long polling."""

    def __init__(self, *, version: int = 4, clock: ScaledClock | None = None) -> None:
        self.version = version
        self.clock = clock
        self.port = 0
        self.ws_queries: list[dict[str, list[str]]] = []
        self.lp_queries: list[dict[str, list[str]]] = []
        self.ws_refuse = False
        self.ws_close_code: int | None = None  # close every new connection at once
        self.connections: list[ServerConnection] = []
        self.lp_queue: asyncio.Queue[httpx.Response] = asyncio.Queue()
        self.lp_status = 200
        self.lp_timeouts = 0  # the next N long polls time out (held past the client's limit)
        self.config_calls = 0
        self.channel_ids = ["shared.sig", "private.sig"]
        # far beyond any test's virtual time (a scaled clock runs 10^3–10^5× fast)
        self.channel_lifetime = 10 * 365 * 86400.0
        self.client_id: str | None = "portal-1"
        self.websocket = True
        self.connected = asyncio.Event()

    # pull.application.config.get -------------------------------------------------
    async def get_config(self) -> dict[str, Any]:
        self.config_calls += 1
        now = self.clock.time() if self.clock else time.time()
        end = now + self.channel_lifetime
        server: dict[str, Any] = {
            "version": self.version,
            "long_pooling_secure": "https://lp.test/sub/",
        }
        if self.websocket:
            server["websocket"] = f"ws://127.0.0.1:{self.port}/subws/"
        if self.client_id:
            server["clientId"] = self.client_id
        kinds = ["shared", "private", "other"]
        channels = {
            kinds[i]: {"id": cid, "type": kinds[i], "start": now, "end": end}
            for i, cid in enumerate(self.channel_ids)
        }
        return {"result": {"server": server, "channels": channels}}

    # WebSocket ------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.ws_refuse:
            return connection.respond(HTTPStatus.FORBIDDEN, "websocket blocked\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        self.ws_queries.append(parse_qs(urlsplit(connection.request.path).query))  # type: ignore[union-attr]
        if self.ws_close_code == 1006:  # no close frame at all
            connection.transport.abort()
            return
        if self.ws_close_code is not None:
            await connection.close(self.ws_close_code, "policy")
            return
        self.connections.append(connection)
        self.connected.set()
        await connection.wait_closed()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakePush]:
        async with serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request, ping_interval=None
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self

    async def send(self, messages: list[dict[str, Any]], *, version: int | None = None) -> None:
        """Send one frame on the newest open connection."""
        await self.connections[-1].send(frame(messages, version or self.version))

    async def send_raw(self, data: str | bytes) -> None:
        await self.connections[-1].send(data)

    def drop(self) -> None:
        """Kill the newest connection without a close frame (the client sees 1006)."""
        transport = self.connections[-1].transport
        transport.abort()

    # long polling ----------------------------------------------------------------
    def lp_respond(self, messages: list[dict[str, Any]]) -> None:
        self.lp_queue.put_nowait(httpx.Response(200, text=frame(messages, self.version)))

    async def _lp_handler(self, request: httpx.Request) -> httpx.Response:
        self.lp_queries.append(parse_qs(request.url.query.decode()))
        if self.lp_timeouts > 0:
            self.lp_timeouts -= 1
            raise httpx.ReadTimeout("held too long", request=request)
        if self.lp_status != 200:
            return httpx.Response(self.lp_status)
        try:
            return await asyncio.wait_for(self.lp_queue.get(), timeout=0.05)
        except TimeoutError:
            return httpx.Response(304, headers={"Last-Message-Id": self.last_mid})

    last_mid = ""

    def http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self._lp_handler))


async def eventually(check: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait (real time, bounded) until ``check()`` holds; fail the test otherwise."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


class Wakes:
    """A wake sink recording the reasons."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)

    def count(self, reason: str) -> int:
        return self.reasons.count(reason)


@asynccontextmanager
async def running(
    push: FakePush, clock: ScaledClock, wakes: WakeSink, **options: Any
) -> AsyncIterator[PullListener]:
    """Serve ``push`` and run a listener against it until the block ends."""
    push.clock = clock  # channel start/end on the listener's clock
    async with push.serving(), push.http_client() as http:
        listener = PullListener(
            get_config=push.get_config,
            connector_id=OURS,
            wake=wakes,
            http=http,
            clock=clock,
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


def control(command: str, params: Any = None, n: int = 900) -> dict[str, Any]:
    """A ``module_id: pull`` control command message."""
    return message(n, "pull", command, params or {})
