"""The Push&Pull connection endpoints: WebSocket and long polling (digest §8.3, A23).

Both take ``CHANNEL_ID`` (ids joined by ``/``, URL-encoded), ``clientId``, ``format=json``,
``mid``, or ``tag``/``time`` for servers ≤2 (``PullHub.parse`` turns them into a ``mid``);
``jsonRpc`` and ``revision`` are accepted and ignored.

* WebSocket (``/subws/`` and ``/sub/``): on connect, one frame with the history missed
  since ``mid``; then one frame per delivery (messages that queued up together share a
  frame). A refused query is accepted and closed with **4010** (the code Bitrix's client
  treats as "wrong channel": it fetches the config again), reason = the problem.
* Long polling (``GET /sub/``): answers at once with missed history, else holds until a
  message arrives (200, same framing) or ``hold_timeout`` passes: **304** with
  ``Expires: Thu, 01 Jan 1973 11:11:01 GMT`` and ``Last-Message-Id`` (the behaviour
  Bitrix's long-polling client expects). A refused query answers **400** text/plain.

Faults: close code 1006 aborts the TCP connection (no close frame) through the uvicorn
protocol's transport; if no transport can be found (another server, a middleware that
wraps ``receive``), the connection is closed with 1011 instead and ``stats`` counts
``abort_fallback``. A refused WebSocket gets an HTTP denial response (``status``) where
the server supports the ``websocket.http.response`` extension, otherwise 403.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from connector.emulator.pull_framing import PullMessage, media_type
from connector.emulator.pull_subscribers import (
    Close,
    Item,
    Refusal,
    Subscriber,
    abort_transport,
)

if TYPE_CHECKING:
    from connector.emulator.pull_connections import PullConnections

__all__ = [
    "LONG_POLL_EXPIRES",
    "Close",
    "Item",
    "Subscriber",
    "abort_transport",
    "long_poll_request",
    "make_routes",
    "websocket_session",
]

LONG_POLL_EXPIRES = "Thu, 01 Jan 1973 11:11:01 GMT"


def make_routes(hub: PullConnections) -> list[BaseRoute]:
    async def websocket(ws: WebSocket) -> None:
        await websocket_session(hub, ws)

    async def long_poll(request: Request) -> Response:
        return await long_poll_request(hub, request)

    return [
        WebSocketRoute("/subws/", websocket),
        WebSocketRoute("/sub/", websocket),
        Route("/sub/", long_poll, methods=["GET"]),
    ]


async def _refuse_handshake(hub: PullConnections, ws: WebSocket, status: int | None) -> None:
    hub.stats["websocket_refused"] += 1
    if status is None and abort_transport(ws._receive):
        await _settle(ws, disconnects=1)
        return
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(PlainTextResponse("WebSocket is not allowed", status or 403))
        await _settle(ws, disconnects=2)
    else:
        await ws.close(1008)


async def _settle(ws: WebSocket, *, disconnects: int) -> None:
    """Let the server see the connection go before returning from a refused handshake,
    so uvicorn does not log "returned without completing handshake" (bounded wait)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            while disconnects:
                if (await ws._receive())["type"] == "websocket.disconnect":
                    disconnects -= 1


async def _wait_disconnect(ws: WebSocket) -> None:
    """Consume (and ignore) client frames until the client is gone."""
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass


async def _close(hub: PullConnections, ws: WebSocket, sub: Subscriber, close: Close) -> None:
    if close.code == 1006:
        if sub.abort():
            return
        hub.stats["abort_fallback"] += 1
        await ws.close(1011, close.reason or "abnormal closure")
        return
    await ws.close(close.code, close.reason)


async def websocket_session(hub: PullConnections, ws: WebSocket) -> None:
    """Serve one WebSocket connection until the client leaves or a close is requested."""
    hub.stats["websocket_attempts"] += 1
    await hub.until_unstalled("handshake")
    refused, status = hub.websocket_refusal
    if refused:
        await _refuse_handshake(hub, ws, status)
        return
    request = hub.parse(ws.query_params)
    await ws.accept()
    if isinstance(request, Refusal):
        await ws.close(4010, request.reason)
        return
    sub = Subscriber("websocket", request, hub.settings.version, ws._receive)
    missed = hub.attach(sub, request.mid)
    client_gone = asyncio.ensure_future(_wait_disconnect(ws))
    try:
        if missed:
            await hub.until_unstalled("delivery")
            await ws.send_text(hub.frame(missed, version=sub.version, json_format=sub.json_format))
        while True:
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            item = getter.result()
            close: Close | None = item if isinstance(item, Close) else None
            if isinstance(item, PullMessage):
                batch, close = sub.take_batch(item)
                await hub.until_unstalled("delivery")
                await ws.send_text(
                    hub.frame(batch, version=sub.version, json_format=sub.json_format)
                )
            if close is not None:
                await _close(hub, ws, sub, close)
                break
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        client_gone.cancel()
        hub.detach(sub)


async def long_poll_request(hub: PullConnections, http: Request) -> Response:
    """Serve one long-polling GET."""
    hub.stats["long_poll_requests"] += 1
    await hub.until_unstalled("handshake")
    request = hub.parse(http.query_params)
    if isinstance(request, Refusal):
        return PlainTextResponse(request.reason, 400)
    sub = Subscriber("long_poll", request, hub.settings.version, http._receive)
    messages = hub.attach(sub, request.mid)
    try:
        if not messages:
            try:
                item = await asyncio.wait_for(sub.queue.get(), hub.settings.hold_timeout)
            except TimeoutError:
                headers = {"Expires": LONG_POLL_EXPIRES}
                last = hub.last_mid(sub.public_ids) or request.mid
                if last:
                    headers["Last-Message-Id"] = last
                return Response(status_code=304, headers=headers)
            if isinstance(item, Close):
                if not sub.abort():
                    hub.stats["abort_fallback"] += 1
                return Response(status_code=503)
            messages, _ = sub.take_batch(item)
        await hub.until_unstalled("delivery")
        body = hub.frame(messages, version=sub.version, json_format=sub.json_format)
        return Response(body, media_type=media_type(sub.version, sub.json_format))
    finally:
        hub.detach(sub)
