"""The two Push&Pull transports: one WebSocket session, one long-polling session.

Each runs one connection until it ends and says how (:class:`End` or the control
command that ended it). The listener (:mod:`connector.adapters.pull_listener`) decides
what comes next; it is the :class:`SessionHost` the transports report to.

* WebSocket (``websockets``): a connection that delivers a frame, or stays open
  ``stable_after`` seconds, *worked*; one that dies before (a proxy that accepts the
  handshake and kills it with 1006/1008, seed L2145) is a failure. Close code 4010
  means "wrong channel" (Bitrix's own client fetches the config again).
* Long polling (``httpx``, reading A23): GET the same URL; 200 carries frames, 304 says
  nothing new (its ``Last-Message-Id`` moves the cursor), 400 is a refused channel; a
  read timeout (the server held the request longer than we wait) just asks again. The
  URL is rebuilt for every request so it carries the latest ``mid``.

Logs name the host, never the URL (channel ids are credentials of a sort).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from connector.adapters.pull_wake import AsyncClock
from connector.core.pull_messages import Control
from connector.core.reconnect import Transport

log = logging.getLogger("connector.pull")

#: Close code of a refused ``CHANNEL_ID`` (Bitrix's client: "wrong channel id").
WRONG_CHANNEL_CLOSE = 4010


class End(Enum):
    """How a session ended, when no control command ended it."""

    FAILED = "failed"  # could not connect / blocked: counts toward the WebSocket switch
    DROPPED = "dropped"  # it worked, then the connection was lost
    RENEW = "renew"  # a channel is about to end: fetch the config again
    RETRY_WEBSOCKET = "retry_websocket"  # the temporary long-polling period is over
    WRONG_CHANNEL = "wrong_channel"  # channels refused (expired, replaced): new config


Outcome = End | Control


class SessionHost(Protocol):
    """What a transport reports to (the listener)."""

    def on_frame(self, data: bytes | str) -> Control | None: ...

    def on_connected(self, transport: Transport, host: str) -> None: ...

    def on_worked(self, transport: Transport) -> None: ...

    def on_last_mid(self, mid: str) -> None: ...


@dataclass(frozen=True)
class WebSocketOptions:
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    stable_after: float = 30.0
    #: ``True`` honours the environment's proxy settings (as httpx does), ``None`` none
    proxy: str | Literal[True] | None = True
    max_size: int = 8 * 1024 * 1024


def _describe(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if status else type(exc).__name__


async def websocket_session(
    host: SessionHost, url_for: Callable[[], str], clock: AsyncClock, options: WebSocketOptions
) -> Outcome:
    """One WebSocket connection, from handshake to close."""
    url = url_for()
    where = urlsplit(url).netloc
    try:
        connection = await ws_connect(
            url,
            open_timeout=options.open_timeout,
            ping_interval=options.ping_interval,
            proxy=options.proxy,
            max_size=options.max_size,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("pull: WebSocket to %s failed: %s", where, _describe(exc))
        return End.FAILED
    host.on_connected(Transport.WEBSOCKET, where)
    opened_at = clock.monotonic()
    worked = False
    try:
        async for data in connection:
            if not worked:
                worked = True
                host.on_worked(Transport.WEBSOCKET)
            control = host.on_frame(data)
            if control is not None:
                return control
    except ConnectionClosed:
        pass
    finally:
        await connection.close()
    code = connection.close_code
    log.warning("pull: WebSocket to %s closed with code %s", where, code)
    if code == WRONG_CHANNEL_CLOSE:
        return End.WRONG_CHANNEL
    if not worked and clock.monotonic() - opened_at >= options.stable_after:
        worked = True
        host.on_worked(Transport.WEBSOCKET)
    return End.DROPPED if worked else End.FAILED


async def long_poll_session(
    host: SessionHost, http: httpx.AsyncClient, url_for: Callable[[], str], hold: float
) -> Outcome:
    """Long-poll requests one after another until a failure or a control command."""
    timeout = httpx.Timeout(hold + 10.0, connect=10.0)
    opened = False
    where = ""
    while True:
        url = url_for()
        where = urlsplit(url).netloc
        try:
            response = await http.get(url, timeout=timeout)
        except httpx.ReadTimeout:
            continue  # the server accepted and held the request past our limit: ask again
        except httpx.HTTPError as exc:
            log.warning("pull: long poll to %s failed: %s", where, type(exc).__name__)
            return End.DROPPED if opened else End.FAILED
        if response.status_code not in (200, 304):
            log.warning("pull: long poll to %s answered %d", where, response.status_code)
            if response.status_code == 400:
                return End.WRONG_CHANNEL
            return End.DROPPED if opened else End.FAILED
        if not opened:
            opened = True
            host.on_connected(Transport.LONG_POLLING, where)
            host.on_worked(Transport.LONG_POLLING)
        if response.status_code == 304:
            last = response.headers.get("Last-Message-Id")
            if last:
                host.on_last_mid(last)
            continue
        control = host.on_frame(response.content)
        if control is not None:
            return control
