"""Push&Pull: ``pull.application.config.get``, channels, messages, history and faults.

``PullHub`` (one per portal, ``portal.pull``) is the server side of digest §8:

* ``config_for`` answers ``pull.application.config.get`` (``pull_config``, scope
  ``pull``) with per-app shared/private channels living 12 h on the test clock.
* ``routes()`` gives the WebSocket (``/subws/``, also ``/sub/``) and long-polling
  (``GET /sub/``) endpoints (``pull_endpoints``); framing is in ``pull_framing``.
* ``publish`` / ``notify_offline`` put messages on channels; each channel keeps a history
  so a client reconnecting with ``mid`` gets a one-time replay of what it missed.
* Control operations (for ``/_emulator/...``): ``send_channel_expire``,
  ``send_config_expire``, ``send_server_restart``, ``expire_channels``,
  ``drop_connections``, ``refuse_websocket`` / ``allow_websocket``, ``set_stall``,
  ``set_version``, ``set_extra_placement``; introspection: ``connections``,
  ``published``, ``snapshot``, ``wait_for_connections``.

Every method is safe to call from any thread: REST handlers and tests may run outside
the event loop that serves the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from connector.emulator.pull_channels import Channel, ChannelProblem, ChannelStore
from connector.emulator.pull_config import PullSettings, build_config
from connector.emulator.pull_framing import PullMessage, WireOptions, encode, mid_sequence

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from starlette.routing import BaseRoute

    from connector.emulator.context import CallContext
    from connector.emulator.portal import Portal
    from connector.emulator.pull_endpoints import Subscriber

STALL_MODES = ("handshake", "delivery")
PUBLISHED_KEPT = 10_000
"""How many published messages ``published()`` remembers (all channels together)."""
SNAPSHOT_MESSAGES = 100
"""How many of the latest messages ``snapshot()`` lists."""


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


class PullHub:
    """The Push&Pull server of one portal."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.settings = PullSettings(server_name=f"rt.{portal.domain}")
        self.channels = ChannelStore(portal.clock.now, on_reopen=self._announce_reopen)
        self.push_client_id = hashlib.md5(f"pull:{portal.member_id}".encode()).hexdigest()
        """The portal's id on the cloud push server (``server.clientId``)."""
        self.config_timestamp = int(portal.clock.now())
        self.stats: Counter[str] = Counter()
        self.stall_mode: str | None = None
        self._ws_refusal: tuple[bool, int | None] = (False, None)
        self._lock = threading.RLock()
        self._seq = 0
        self._tags: Counter[str] = Counter()
        self._history: dict[str, deque[PullMessage]] = {}
        self._published: deque[PullMessage] = deque(maxlen=PUBLISHED_KEPT)
        self._subs: dict[int, Subscriber] = {}
        self._replayed: set[tuple[str, frozenset[str]]] = set()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ HTTP surface
    def routes(self) -> list[BaseRoute]:
        """Starlette routes: WebSocket ``/subws/`` and ``/sub/``, long-poll ``GET /sub/``."""
        from connector.emulator.pull_endpoints import make_routes

        return make_routes(self)

    def config_for(self, ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
        """The ``pull.application.config.get`` result for the calling app."""
        return build_config(self, ctx, params)

    # ------------------------------------------------------------------ publishing
    def publish(
        self,
        client_id: str,
        module_id: str,
        command: str,
        params: Any,
        *,
        channel_type: str = "shared",
    ) -> PullMessage:
        """Publish on the app's live channel of ``channel_type`` (opened if needed)."""
        return self.publish_on(
            self.channels.current(client_id, channel_type), module_id, command, params
        )

    def publish_on(
        self, channel: Channel, module_id: str, command: str, params: Any
    ) -> PullMessage:
        """Publish on one channel: record it in history and hand it to live subscribers."""
        with self._lock:
            self._seq += 1
            self._tags[channel.public_id] += 1
            msg = PullMessage(
                self._seq,
                channel.public_id,
                channel.type,
                channel.client_id,
                str(self._tags[channel.public_id]),
                self.portal.clock.now(),
                module_id,
                command,
                params,
            )
            history = self._history.setdefault(
                channel.public_id, deque(maxlen=self.settings.history_limit)
            )
            history.append(msg)
            self._published.append(msg)
            for sub in self._subs.values():
                if channel.public_id in sub.public_ids:
                    sub.offer(msg)
            self.stats["published"] += 1
            return msg

    def notify_offline(self, client_id: str, counts: dict[str, int]) -> None:
        """One ``event_offline`` on the app's shared channel (digest §7.11(b), §8.7)."""
        entries = [{"connector_id": c, "count": n} for c, n in counts.items() if n > 0]
        if entries:
            self.publish(client_id, "rest", "event_offline", entries)

    # ------------------------------------------------------------------ control commands
    def send_channel_expire(
        self, client_id: str, *, action: str = "reconnect", channel_type: str = "shared"
    ) -> PullMessage:
        """``channel_expire`` on the app's channel; the old channel is refused afterwards.

        ``reconnect`` opens the replacement now and sends it as ``new_channel``;
        ``get_config`` leaves the replacement to the next config.get.
        """
        if action == "reconnect":
            old, new = self.channels.renew(client_id, channel_type)
            params: dict[str, Any] = {
                "action": "reconnect",
                "channel": {"id": old.id, "type": old.type},
                "new_channel": new.describe(self.portal.clock.iso),
            }
        elif action == "get_config":
            old = self.channels.revoke(client_id, channel_type)
            params = {"action": "get_config", "channel": {"id": old.id, "type": old.type}}
        else:
            raise ValueError(f"unknown channel_expire action {action!r}")
        return self.publish_on(old, "pull", "channel_expire", params)

    def _announce_reopen(self, expired: Channel, replacement: Channel) -> None:
        """An expired channel was reopened (config.get or a publish): tell whoever still
        listens on it to move, as ``channel_expire``/``reconnect`` with ``new_channel``."""
        if self.settings.announce_reopen:
            params = {
                "action": "reconnect",
                "channel": {"id": expired.id, "type": expired.type},
                "new_channel": replacement.describe(self.portal.clock.iso),
            }
            self.publish_on(expired, "pull", "channel_expire", params)

    def send_config_expire(self, client_id: str | None = None) -> list[PullMessage]:
        """``config_expire`` on the shared channel of one app or of every app."""
        self.config_timestamp = int(self.portal.clock.now())
        return self._broadcast(client_id, "config_expire")

    def send_server_restart(
        self, client_id: str | None = None, *, disconnect: bool = False
    ) -> list[PullMessage]:
        """``server_restart``; with ``disconnect`` the connections then close (1001)."""
        sent = self._broadcast(client_id, "server_restart")
        if disconnect:
            self.drop_connections(1001, "server restart", client_id=client_id)
        return sent

    def _broadcast(self, client_id: str | None, command: str) -> list[PullMessage]:
        apps = [client_id] if client_id else self.channels.apps()
        return [self.publish(app, "pull", command, {}) for app in apps]

    def expire_channels(self, margin: float = 1.0) -> float:
        """Advance the portal's test clock past the end of every live channel.

        Returns the seconds advanced. Note the clock is the portal's: tokens age too.
        """
        end = self.channels.latest_end()
        now = self.portal.clock.now()
        step = (end - now + margin) if end is not None else float(self.channels.ttl)
        step = max(step, 0.0)
        self.portal.clock.advance(step)
        return step

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
        from connector.emulator.pull_endpoints import Close

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

    def set_version(self, version: int) -> None:
        """Server version for config.get and for connections opened from now on."""
        if version not in (2, 3, 4, 5):
            raise ValueError("supported server versions: 2, 3, 4, 5")
        self.settings.version = version

    def set_extra_placement(self, placement: str) -> None:
        """``"text"`` (default) puts ``extra`` inside ``text``; ``"top"`` beside it."""
        if placement not in ("text", "top"):
            raise ValueError("placement is 'text' or 'top'")
        self.settings.extra_in_text = placement == "text"

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

    def published(
        self, client_id: str | None = None, command: str | None = None
    ) -> list[PullMessage]:
        with self._lock:
            return [
                m
                for m in self._published
                if (client_id is None or m.client_id == client_id)
                and (command is None or m.command == command)
            ]

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state for the control surface."""
        refused, status = self._ws_refusal
        return {
            "settings": asdict(self.settings),
            "push_client_id": self.push_client_id,
            "stall": self.stall_mode,
            "websocket_refused": refused,
            "websocket_refusal_status": status,
            "connections": self.connections(),
            "published": [
                {
                    "id": m.id,
                    "mid": m.mid,
                    "client_id": m.client_id,
                    "channel": m.channel,
                    "module_id": m.module_id,
                    "command": m.command,
                    "params": m.params,
                }
                for m in self.published()[-SNAPSHOT_MESSAGES:]
            ],
            "stats": dict(self.stats),
        }

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
