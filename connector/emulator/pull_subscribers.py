"""One Push&Pull connection as the hub sees it: the parsed connection query
(:class:`SubscribeRequest`, or a :class:`Refusal`), the live :class:`Subscriber` with
its queue fed from any thread, and the :class:`Close` request that ends it.

A leaf of the Push&Pull modules: ``pull_connections`` (the hub's connection side) and
``pull_endpoints`` (WebSocket and long polling) both build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

from connector.emulator.pull_channels import Channel
from connector.emulator.pull_framing import PullMessage


@dataclass(frozen=True)
class SubscribeRequest:
    """A parsed, accepted connection query."""

    channels: tuple[Channel, ...]
    mid: str | None
    json_format: bool
    json_rpc: bool


@dataclass(frozen=True)
class Refusal:
    """A connection query the server refuses (WebSocket close 4010 / HTTP 400)."""

    reason: str


_ids = itertools.count(1)


@dataclass(frozen=True)
class Close:
    """A request to end one connection with a close code."""

    code: int
    reason: str = ""


Item = PullMessage | Close


def abort_transport(receive: Any) -> bool:
    """Abort the TCP connection behind an ASGI ``receive`` (uvicorn's protocol object
    owns it as ``transport``). False when it cannot be reached."""
    owner = getattr(receive, "__self__", None)
    abort = getattr(getattr(owner, "transport", None), "abort", None)
    if not callable(abort):
        return False
    abort()
    return True


class Subscriber:
    """One live connection: its channels, framing, and a queue fed from any thread."""

    def __init__(self, kind: str, request: SubscribeRequest, version: int, receive: Any) -> None:
        self.id = next(_ids)
        self.kind = kind
        self.version = version
        self.json_format = request.json_format
        self.channels = request.channels
        self.public_ids = frozenset(c.public_id for c in request.channels)
        self.client_ids = frozenset(c.client_id for c in request.channels)
        self.opened = time.time()
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._receive = receive

    def offer(self, item: Item) -> None:
        """Queue an item for this connection; callable from any thread."""
        with contextlib.suppress(RuntimeError):  # the serving loop is gone
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def abort(self) -> bool:
        """Drop the TCP connection without a close frame, if the transport is reachable."""
        return abort_transport(self._receive)

    def take_batch(self, first: PullMessage) -> tuple[list[PullMessage], Close | None]:
        """``first`` plus every message already queued, stopping at a close request."""
        batch = [first]
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, Close):
                return batch, item
            batch.append(item)
        return batch, None

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "client_ids": sorted(self.client_ids),
            "channels": sorted(self.public_ids),
            "channel_types": sorted({c.type for c in self.channels}),
            "version": self.version,
            "format": "json" if self.json_format else "",
            "opened": self.opened,
        }
