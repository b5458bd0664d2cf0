"""Push&Pull channels: ids, signatures, the 12-hour lifetime, renewal and lookup.

Each app (``client_id``) has one live *shared* and one live *private* channel. Ids follow
the documented shapes (config.get sample, digest §8.3):

* shared  ``id``        = ``<public hex32>.<hex40 signature>``
* private ``id``        = ``<private hex32>:<public hex32>.<hex40 signature>``
* private ``public_id`` = ``<public hex32>.<another hex40 signature>``

A message's ``channel`` field carries the channel's public hex32. Signatures are
HMAC-SHA1 under a per-hub secret, so a tampered or invented id is rejected.

A channel lives :data:`CHANNEL_TTL` seconds on the portal's test clock. An expired or
revoked channel (one replaced by ``channel_expire``) is refused at connect time;
``current`` opens a fresh one when the live one has expired (``REOPEN=Y``) and reports
the swap to ``on_reopen`` (the hub announces it with ``channel_expire``/``reconnect``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

CHANNEL_TTL = 12 * 3600
"""Channel lifetime in seconds (seed L2069: "ограничено 12 часами")."""

CHANNEL_TYPES = ("shared", "private")

_ITEM = re.compile(
    r"^(?:(?P<prefix>[0-9a-f]{32}):)?(?P<public>[0-9a-f]{32})\.(?P<sig>[0-9a-f]{40})$"
)


class ChannelProblem(Enum):
    """Why a ``CHANNEL_ID`` item was refused."""

    MALFORMED = "malformed channel id"
    UNKNOWN = "unknown channel id or wrong signature"
    EXPIRED = "channel expired"
    REVOKED = "channel was replaced"


@dataclass
class Channel:
    """One channel of one app."""

    type: str
    client_id: str
    public_id: str
    signature: str
    start: float
    end: float
    private_id: str = ""
    public_signature: str = ""
    revoked: bool = False

    @property
    def id(self) -> str:
        """The id a client subscribes with (``CHANNEL_ID`` item)."""
        if self.private_id:
            return f"{self.private_id}:{self.public_id}.{self.signature}"
        return f"{self.public_id}.{self.signature}"

    def expired(self, now: float) -> bool:
        return now >= self.end

    def describe(self, iso: Callable[[float], str]) -> dict[str, Any]:
        """The ``channels.<type>`` object of config.get / ``new_channel`` of channel_expire."""
        out: dict[str, Any] = {"id": self.id}
        if self.type == "private":
            out["public_id"] = f"{self.public_id}.{self.public_signature}"
        out.update({"start": iso(self.start), "end": iso(self.end), "type": self.type})
        return out


class ChannelStore:
    """Every channel the hub ever issued, and the live one per (app, type). Thread-safe."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        ttl: float = CHANNEL_TTL,
        on_reopen: Callable[[Channel, Channel], None] | None = None,
    ) -> None:
        self._now = now
        self.ttl = ttl
        self.on_reopen = on_reopen
        """Called as ``on_reopen(expired, replacement)`` when an expired channel is reopened."""
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._by_id: dict[str, Channel] = {}
        self._live: dict[tuple[str, str], Channel] = {}

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha1).hexdigest()

    def _open(self, client_id: str, kind: str) -> Channel:
        start = self._now()
        public = secrets.token_hex(16)
        if kind == "private":
            private = secrets.token_hex(16)
            channel = Channel(
                kind,
                client_id,
                public,
                self._sign(f"{private}:{public}"),
                start,
                start + self.ttl,
                private_id=private,
                public_signature=self._sign(f"public:{public}"),
            )
        else:
            channel = Channel(kind, client_id, public, self._sign(public), start, start + self.ttl)
        self._by_id[channel.id] = channel
        self._live[(client_id, kind)] = channel
        return channel

    def current(self, client_id: str, kind: str = "shared", *, reopen: bool = True) -> Channel:
        """The app's live channel of ``kind``; a new one if none, revoked, or expired+reopen."""
        if kind not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {kind!r}")
        with self._lock:
            old = self._live.get((client_id, kind))
            if old is not None and not old.revoked and not (reopen and old.expired(self._now())):
                return old
            channel = self._open(client_id, kind)
        if old is not None and not old.revoked and self.on_reopen is not None:
            self.on_reopen(old, channel)
        return channel

    def existing(self, client_id: str | None = None) -> list[Channel]:
        """Live (not revoked) channels, of one app or all, whether or not expired."""
        with self._lock:
            return [
                c
                for (app, _), c in self._live.items()
                if not c.revoked and (client_id is None or app == client_id)
            ]

    def apps(self) -> list[str]:
        with self._lock:
            return sorted({app for app, _ in self._live})

    def renew(self, client_id: str, kind: str = "shared") -> tuple[Channel, Channel]:
        """Revoke the live channel and open its replacement: ``(old, new)``."""
        old = self.current(client_id, kind, reopen=False)
        with self._lock:
            old.revoked = True
            return old, self._open(client_id, kind)

    def revoke(self, client_id: str, kind: str = "shared") -> Channel:
        """Revoke the live channel; the next ``current`` opens a new one."""
        old = self.current(client_id, kind, reopen=False)
        with self._lock:
            old.revoked = True
        return old

    def latest_end(self) -> float | None:
        with self._lock:
            ends = [c.end for c in self._live.values() if not c.revoked]
        return max(ends) if ends else None

    def resolve(self, item: str) -> Channel | ChannelProblem:
        """Look up one ``CHANNEL_ID`` item; a :class:`ChannelProblem` if it is not usable."""
        if not _ITEM.match(item):
            return ChannelProblem.MALFORMED
        with self._lock:
            channel = self._by_id.get(item)
        if channel is None:
            return ChannelProblem.UNKNOWN
        if channel.revoked:
            return ChannelProblem.REVOKED
        if channel.expired(self._now()):
            return ChannelProblem.EXPIRED
        return channel
