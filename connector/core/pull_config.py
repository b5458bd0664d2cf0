"""The Push&Pull connection settings: parse ``pull.application.config.get``, build URLs.

Pure: no I/O. The response shape is digest §8.2 (seed L2537–2557); the URL rules are
§8.3 (seed L2059–2071):

* the long-polling key is spelled ``long_polling_secure`` or ``long_pooling_secure``
  (sic, newer servers); both are accepted (A26);
* ``clientId`` sits under ``server`` or at the top level and is added to the URL only
  when present (A26);
* every channel returned is subscribed (A25): ``CHANNEL_ID`` is all channel ids joined
  by ``/``;
* ``format=json`` from server version 4; history resumes with ``mid`` for versions ≥ 3
  and ``tag``/``time`` for versions ≤ 2;
* version ≥ 5 (JSON-RPC) is not supported (A27): :attr:`PullConfig.supported` is false
  and the caller falls back to polling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from connector.errors import ConnectorError

#: Channels are valid for 12 hours (seed L2069); used when a channel has no ``end``.
CHANNEL_LIFETIME_SECONDS = 12 * 3600.0

#: First server version that speaks JSON-RPC, which this client does not implement.
FIRST_UNSUPPORTED_VERSION = 5

_LONG_POLL_SECURE_KEYS = ("long_polling_secure", "long_pooling_secure")
_LONG_POLL_PLAIN_KEYS = ("long_polling", "long_pooling")


class PullConfigError(ConnectorError):
    """``pull.application.config.get`` answered something this client cannot use."""


@dataclass(frozen=True)
class Channel:
    """One Push&Pull channel: its id (``<hex32>.<hex40>``), type and validity window."""

    id: str
    type: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class PullConfig:
    """The parts of ``pull.application.config.get`` a client needs."""

    version: int
    channels: tuple[Channel, ...]
    client_id: str | None = None
    websocket: str | None = None
    websocket_secure: str | None = None
    long_polling: str | None = None
    long_polling_secure: str | None = None
    websocket_enabled: bool = True

    @property
    def supported(self) -> bool:
        """True for versions this client speaks (≤ 4); version ≥ 5 is JSON-RPC."""
        return self.version < FIRST_UNSUPPORTED_VERSION

    def websocket_base(self, *, prefer_secure: bool = True) -> str | None:
        """The WebSocket base URL, or ``None`` when the server offers none (or disabled).

        A plain ``ws://`` URL is used only for a loopback host: the connector never
        downgrades to an unencrypted channel across a network (``None`` then, and the
        safety poll carries on alone)."""
        if not self.websocket_enabled:
            return None
        pair = (self.websocket_secure, self.websocket)
        return _pick(u for u in (pair if prefer_secure else pair[::-1]) if _safe(u))

    def long_polling_base(self, *, prefer_secure: bool = True) -> str | None:
        """The long-polling base URL, or ``None`` when the server offers none; plain
        ``http://`` only for a loopback host, as for the WebSocket."""
        pair = (self.long_polling_secure, self.long_polling)
        return _pick(u for u in (pair if prefer_secure else pair[::-1]) if _safe(u))

    def earliest_end(self) -> datetime | None:
        """When the first channel expires (``None`` when no channel says)."""
        ends = [c.end for c in self.channels if c.end is not None]
        return min(ends) if ends else None

    def replace_channel(self, old_id: str | None, new: Channel) -> PullConfig:
        """A copy where channel ``old_id`` (or, failing that, the one of ``new``'s type)
        is replaced by ``new``; ``new`` is appended when neither matches."""
        channels = list(self.channels)
        for i, channel in enumerate(channels):
            if old_id is not None and channel.id == old_id:
                channels[i] = new
                return replace(self, channels=tuple(channels))
        for i, channel in enumerate(channels):
            if new.type is not None and channel.type == new.type:
                channels[i] = new
                return replace(self, channels=tuple(channels))
        return replace(self, channels=(*channels, new))


_LOOPBACK = ("localhost", "::1")


def _safe(url: str | None) -> bool:
    """Encrypted, or to this machine (the emulator, a local relay)."""
    if not url:
        return False
    parts = urlsplit(url)
    if parts.scheme in ("wss", "https"):
        return True
    host = (parts.hostname or "").lower()
    return host in _LOOPBACK or host.startswith("127.")


def _pick(candidates: Iterable[str | None]) -> str | None:
    return next((c for c in candidates if c), None)


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        text = str(value).strip()
        return text or None
    return None


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 date (``2017-06-28T12:04:00+02:00``) or a unix time, as aware UTC.

    Anything else gives ``None``: a channel without a readable end is renewed on the
    12-hour default instead of failing the whole config.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None


def parse_channel(raw: object, *, default_type: str | None = None) -> Channel | None:
    """A channel object ``{id, start, end, type}``; ``None`` when it has no id."""
    if not isinstance(raw, Mapping):
        return None
    channel_id = _text(raw.get("id"))
    if channel_id is None:
        return None
    kind = _text(raw.get("type")) or default_type
    return Channel(channel_id, kind, parse_time(raw.get("start")), parse_time(raw.get("end")))


def _version(value: object) -> int:
    if isinstance(value, bool):
        raise PullConfigError("pull config: server.version is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise PullConfigError("pull config: server.version is missing or not a number")


def _flag(value: object, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().upper() in {"Y", "1", "TRUE", "YES"}
    return bool(value)


def parse_config(raw: Mapping[str, Any]) -> PullConfig:
    """Parse the ``pull.application.config.get`` answer (with or without ``result``).

    Raises :class:`PullConfigError` when there is no ``server`` block, no version, no
    channel with an id, or no URL to connect to.
    """
    body: object = raw.get("result", raw) if isinstance(raw, Mapping) else None
    if not isinstance(body, Mapping):
        raise PullConfigError("pull config: the answer is not an object")
    server = body.get("server")
    if not isinstance(server, Mapping):
        raise PullConfigError("pull config: no server block")
    version = _version(server.get("version"))
    raw_channels = body.get("channels")
    channels: list[Channel] = []
    if isinstance(raw_channels, Mapping):
        # shared first: it carries event_offline (§7.11); then the rest in answer order
        names = sorted(raw_channels, key=lambda name: name != "shared")
        for name in names:
            channel = parse_channel(raw_channels[name], default_type=str(name))
            if channel is not None and all(c.id != channel.id for c in channels):
                channels.append(channel)
    if not channels:
        raise PullConfigError("pull config: no channel with an id")
    config = PullConfig(
        version=version,
        channels=tuple(channels),
        client_id=_text(server.get("clientId")) or _text(body.get("clientId")),
        websocket=_text(server.get("websocket")),
        websocket_secure=_text(server.get("websocket_secure")),
        long_polling=_pick(_text(server.get(k)) for k in _LONG_POLL_PLAIN_KEYS),
        long_polling_secure=_pick(_text(server.get(k)) for k in _LONG_POLL_SECURE_KEYS),
        websocket_enabled=_flag(server.get("websocket_enabled"), True),
    )
    if config.websocket_base() is None and config.long_polling_base() is None:
        if config.websocket or config.long_polling:
            raise PullConfigError(
                "pull config: only unencrypted ws:// / http:// addresses for a host that is "
                "not this machine; the connector does not downgrade (the safety poll goes on)"
            )
        raise PullConfigError("pull config: no WebSocket nor long-polling address")
    return config


@dataclass(frozen=True)
class Cursor:
    """Where to resume history: ``mid`` (server ≥ 3) or ``tag``/``time`` (≤ 2)."""

    mid: str | None = None
    tag: str | None = None
    time: str | None = None


def connection_url(base: str, config: PullConfig, cursor: Cursor | None = None) -> str:
    """``base`` plus ``CHANNEL_ID``, ``clientId``, ``format=json`` and the history cursor.

    Existing query parameters of ``base`` are kept. Raises :class:`PullConfigError` for a
    version ≥ 5 server, which needs a protocol this client does not speak.
    """
    if not config.supported:
        raise PullConfigError(f"pull server version {config.version} is not supported")
    params: list[tuple[str, str]] = [("CHANNEL_ID", "/".join(c.id for c in config.channels))]
    if config.client_id:
        params.append(("clientId", config.client_id))
    if config.version >= 4:
        params.append(("format", "json"))
    if cursor is not None:
        if config.version >= 3:
            if cursor.mid:
                params.append(("mid", cursor.mid))
        else:
            if cursor.tag:
                params.append(("tag", cursor.tag))
            if cursor.time:
                params.append(("time", cursor.time))
    parts = urlsplit(base)
    query = urlencode(params)
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def renew_at(config: PullConfig, *, fetched_at: float, margin: float) -> float:
    """Unix time at which to fetch the config again: ``margin`` seconds before the first
    channel ends, or before ``fetched_at`` + 12 h when no channel says when it ends."""
    end = config.earliest_end()
    deadline = end.timestamp() if end is not None else fetched_at + CHANNEL_LIFETIME_SECONDS
    return deadline - margin
