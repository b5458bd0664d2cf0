"""The connection side of the Push&Pull hub, mixed into ``pull.PullHub``.

:class:`PullConnections` validates a connection query (``parse``: ``CHANNEL_ID``,
``clientId``, ``mid`` or ``tag``/``time``, ``format``), registers live subscribers and
replays the history they missed (``attach`` / ``detach``), frames messages for them
(``frame``, ``last_mid``), lists them (``connections``), applies the connection faults
(``drop_connections``, ``refuse_websocket`` / ``allow_websocket``, ``set_stall``) and
lets async callers wait for a state change (``until_unstalled``,
``wait_for_connections``). The state it works on is created by ``PullHub.__init__``;
the endpoints that drive it are in ``pull_endpoints``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter, deque
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from connector.emulator.pull_channels import Channel, ChannelProblem, ChannelStore
from connector.emulator.pull_framing import PullMessage, WireOptions, encode, mid_sequence
from connector.emulator.pull_settings import PullSettings
from connector.emulator.pull_subscribers import Close, Refusal, Subscriber, SubscribeRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from connector.emulator.portal_contract import PortalContract

STALL_MODES = ("handshake", "delivery")


class PullConnections:
    """Live connections of one portal's hub (see the module docstring)."""

    portal: PortalContract
    settings: PullSettings
    channels: ChannelStore
    push_client_id: str
    stats: Counter[str]
    stall_mode: str | None
    _ws_refusal: tuple[bool, int | None]
    _lock: threading.RLock
    _history: dict[str, deque[PullMessage]]
    _subs: dict[int, Subscriber]
    _replayed: set[tuple[str, frozenset[str]]]
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]

    # ------------------------------------------------------------------ faults
    def drop_connections(
        self,
        code: int = 1006,
        reason: str = "",
        *,
        kind: str | None = None,
        client_id: str | None = None,
    ) -> int:
        """Close live connections: 1006 aborts the TCP connection without a close frame,
        any other code sends a close frame with it. Held long-poll requests are always
        aborted. Returns how many connections were told to close."""
        with self._lock:
            targets = [
                s
                for s in self._subs.values()
                if (kind is None or s.kind == kind)
                and (client_id is None or client_id in s.client_ids)
            ]
            for sub in targets:
                sub.offer(Close(code, reason))
        self.stats[f"dropped_{code}"] += len(targets)
        return len(targets)

    def refuse_websocket(self, status: int | None = 403) -> None:
        """Refuse WebSocket handshakes with HTTP ``status``; ``None`` drops the TCP
        connection without answering. Long polling keeps working."""
        self._ws_refusal = (True, status)

    def allow_websocket(self) -> None:
        self._ws_refusal = (False, None)

    @property
    def websocket_refusal(self) -> tuple[bool, int | None]:
        return self._ws_refusal

    def set_stall(self, mode: str | None) -> None:
        """``"handshake"``: new connections hang before the handshake / answer;
        ``"delivery"``: connections stay open but receive nothing until un-stalled
        (messages are kept and then sent); ``None`` ends the stall."""
        if mode is not None and mode not in STALL_MODES:
            raise ValueError(f"unknown stall mode {mode!r}")
        with self._lock:
            self.stall_mode = mode
            self._notify()

    async def until_unstalled(self, mode: str) -> None:
        """Return once the hub is not stalled in ``mode``."""
        await self._wait_until(lambda: self.stall_mode != mode)

    # ------------------------------------------------------------------ connections
    def parse(self, query: Mapping[str, str]) -> SubscribeRequest | Refusal:
        """Validate a connection query (``CHANNEL_ID``, ``clientId``, ``mid`` or
        ``tag``/``time``, ``format``)."""
        raw = query.get("CHANNEL_ID", "")
        items = [item for item in raw.split("/") if item]
        if not items:
            return Refusal("no channel id")
        channels: list[Channel] = []
        for item in items:
            found = self.channels.resolve(item)
            if isinstance(found, ChannelProblem):
                self.stats["refused_channel"] += 1
                return Refusal(found.value)
            channels.append(found)
        if self.settings.mode == "shared" and query.get("clientId") != self.push_client_id:
            self.stats["refused_client_id"] += 1
            return Refusal("wrong clientId")
        mid = query.get("mid") or None
        if mid is None and query.get("time"):
            mid = self._mid_from_tag_time(channels, query.get("tag", ""), query["time"])
        return SubscribeRequest(
            tuple(channels),
            mid,
            query.get("format", "").lower() == "json",
            query.get("jsonRpc", "").lower() == "true",
        )

    def _mid_from_tag_time(self, channels: list[Channel], tag: str, when: str) -> str | None:
        """Servers ≤2 resume by ``tag``/``time`` of the last message seen (§8.3), not
        ``mid``: find that message's ``mid``; an unknown tag falls back to the last
        message published by ``time``, or to the start of history if all came later."""
        try:
            stamp = int(parsedate_to_datetime(when).timestamp())
        except (TypeError, ValueError):
            return None
        public = {c.public_id for c in channels}
        with self._lock:
            history = sorted(
                (m for pid in public for m in self._history.get(pid, ())), key=lambda m: m.id
            )
        exact = [m for m in history if m.tag == tag and int(m.created) == stamp]
        if exact:
            return exact[-1].mid
        seen = [m for m in history if int(m.created) <= stamp]
        if seen:
            return seen[-1].mid
        return f"{stamp:010d}{0:016d}" if history else None

    def attach(self, sub: Subscriber, mid: str | None) -> list[PullMessage]:
        """Register a live subscriber; return the history it missed since ``mid``."""
        with self._lock:
            self._subs[sub.id] = sub
            self.stats[f"{sub.kind}_connections"] += 1
            self._notify()
            seq = mid_sequence(mid) if mid else None
            if seq is None:
                return []
            key = (mid or "", sub.public_ids)
            if self.settings.replay_once and key in self._replayed:
                return []
            missed = sorted(
                (m for pid in sub.public_ids for m in self._history.get(pid, ()) if m.id > seq),
                key=lambda m: m.id,
            )
            if missed and self.settings.replay_once:
                self._replayed.add(key)
            self.stats["replayed"] += len(missed)
            return missed

    def detach(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)
            self._notify()

    def frame(self, messages: list[PullMessage], *, version: int, json_format: bool) -> str:
        opts = WireOptions(
            iso=self.portal.clock.iso,
            now=self.portal.clock.now(),
            server_name=self.settings.server_name,
            revision=self.settings.revision,
            revision_mobile=self.settings.revision_mobile,
            extra_in_text=self.settings.extra_in_text,
        )
        return encode(messages, opts, version=version, json_format=json_format)

    def last_mid(self, public_ids: frozenset[str]) -> str | None:
        with self._lock:
            last = [h[-1] for pid in public_ids if (h := self._history.get(pid))]
        return max(last, key=lambda m: m.id).mid if last else None

    # ------------------------------------------------------------------ introspection
    def connections(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Live connections: id, kind, apps, channel public ids, version, format."""
        with self._lock:
            subs = list(self._subs.values())
        return [s.info() for s in subs if kind is None or s.kind == kind]

    async def wait_for_connections(self, count: int, *, kind: str | None = None) -> None:
        """Wait until at least ``count`` live connections (of ``kind``) exist.
        Wrap in ``asyncio.timeout`` to bound it."""
        await self._wait_until(lambda: len(self.connections(kind)) >= count)

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        """Wait, in the caller's loop, until ``done()`` holds after some state change."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if done():
                    return
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            await future

    def _notify(self) -> None:
        """Wake every ``_wait_until`` (call with the lock held)."""
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
