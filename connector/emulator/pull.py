"""Push&Pull: ``pull.application.config.get``, channels, messages, history and faults.

``PullHub`` (one per portal, ``portal.pull``) is the server side of digest §8. This
module holds the hub's state (settings, channels, history) and what puts messages out;
the connection side (parsing a connection query, live subscribers, faults, waiting) is
the mixin ``pull_connections.PullConnections``:

* ``config_for`` answers ``pull.application.config.get`` (``pull_config``; the REST
  method is in ``pull_methods``, scope ``pull``) with per-app shared/private channels
  living 12 h on the test clock.
* ``routes()`` gives the WebSocket (``/subws/``, also ``/sub/``) and long-polling
  (``GET /sub/``) endpoints (``pull_endpoints``); framing is in ``pull_framing``.
* ``publish`` / ``notify_offline`` put messages on channels; each channel keeps a history
  so a client reconnecting with ``mid`` gets a one-time replay of what it missed.
* Control operations (for ``/_emulator/...``): ``send_channel_expire``,
  ``send_config_expire``, ``send_server_restart``, ``expire_channels``,
  ``set_version``, ``set_extra_placement`` (here), ``drop_connections``,
  ``refuse_websocket`` / ``allow_websocket``, ``set_stall`` (``pull_connections``);
  introspection: ``published``, ``snapshot`` (here), ``connections``,
  ``wait_for_connections`` (``pull_connections``).

Every method is safe to call from any thread: REST handlers and tests may run outside
the event loop that serves the connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter, deque
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from connector.emulator.pull_channels import Channel, ChannelStore
from connector.emulator.pull_config import build_config
from connector.emulator.pull_connections import STALL_MODES, PullConnections
from connector.emulator.pull_framing import PullMessage
from connector.emulator.pull_settings import PullSettings
from connector.emulator.pull_subscribers import Refusal, Subscriber, SubscribeRequest

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.routing import BaseRoute

    from connector.emulator.context import CallContext
    from connector.emulator.portal_contract import PortalContract

__all__ = ["STALL_MODES", "PullHub", "Refusal", "SubscribeRequest"]

PUBLISHED_KEPT = 10_000
"""How many published messages ``published()`` remembers (all channels together)."""
SNAPSHOT_MESSAGES = 100
"""How many of the latest messages ``snapshot()`` lists."""


class PullHub(PullConnections):
    """The Push&Pull server of one portal (connection handling: ``PullConnections``)."""

    def __init__(self, portal: PortalContract) -> None:
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

    # ------------------------------------------------------------------ settings
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

    # ------------------------------------------------------------------ introspection
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
