"""Push&Pull messages: the model, the offline-event hint and the control commands.

Pure: no I/O. Message shape per digest §8.4 (seed L2089–2131)::

    {"id": 320146, "mid": "1452…146", "channel": "6221…8102", "tag": "672",
     "time": "Thu, 29 Jun 2017 09:50:16 GMT",
     "text": {"module_id": "rest", "command": "event_offline", "params": [...]},
     "extra": {...}}

``extra`` may sit inside ``text`` (seed L2105) or beside it (L2077); inside wins (A21).
``channel`` falls back to ``extra.channel`` for old servers. Control commands (§8.6,
``module_id == "pull"``) become :class:`ChannelExpire`, :class:`ConfigExpire` or
:class:`ServerRestart`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.core.portal_answers import as_int
from connector.core.pull_config import Channel, parse_channel
from connector.errors import ConnectorError


class MessageError(ConnectorError):
    """A decoded JSON value is not a Push&Pull message (no ``text.command``…)."""


@dataclass(frozen=True)
class PullMessage:
    """One message from the push server."""

    module_id: str
    command: str
    params: Any = field(default_factory=dict)
    id: int | None = None
    mid: str | None = None
    channel: str | None = None
    tag: str | None = None
    time: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None


def parse_message(raw: object) -> PullMessage:
    """Build a :class:`PullMessage` from a decoded JSON object.

    ``text`` may be an object or a JSON string holding one. Raises :class:`MessageError`
    when ``text.module_id`` or ``text.command`` is missing.
    """
    if not isinstance(raw, Mapping):
        raise MessageError("pull message is not an object")
    text: object = raw.get("text")
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MessageError("pull message text is not JSON") from exc
    if not isinstance(text, Mapping):
        raise MessageError("pull message has no text object")
    module_id = text.get("module_id")
    command = text.get("command")
    if not isinstance(module_id, str) or not isinstance(command, str) or not command:
        raise MessageError("pull message text has no module_id/command")
    outer_extra = raw.get("extra")
    inner_extra = text.get("extra")
    extra: dict[str, Any] = {}
    if isinstance(outer_extra, Mapping):
        extra.update(outer_extra)
    if isinstance(inner_extra, Mapping):
        extra.update(inner_extra)
    channel = _scalar_text(raw.get("channel")) or _scalar_text(extra.get("channel"))
    return PullMessage(
        module_id=module_id,
        command=command,
        params=text.get("params", {}),
        id=as_int(raw.get("id")),
        mid=_scalar_text(raw.get("mid")),
        channel=channel,
        tag=_scalar_text(raw.get("tag")),
        time=_scalar_text(raw.get("time")),
        extra=extra,
    )


@dataclass(frozen=True)
class OfflineNotice:
    """One ``event_offline`` entry: records were queued for ``connector_id``.

    ``count`` is the number of firings in one portal request, not the queue depth: a
    hint for logging only (A18).
    """

    connector_id: str
    count: int | None


def offline_notices(message: PullMessage) -> list[OfflineNotice]:
    """The ``{connector_id, count}`` entries of a ``rest``/``event_offline`` message.

    ``params`` is a list (seed L2572); a single object is accepted too. Entries without
    a string ``connector_id`` are ignored.
    """
    if message.module_id.lower() != "rest" or message.command.lower() != "event_offline":
        return []
    params = message.params
    entries = params if isinstance(params, list) else [params]
    notices: list[OfflineNotice] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            connector = entry.get("connector_id")
            if isinstance(connector, str):
                notices.append(OfflineNotice(connector, as_int(entry.get("count"))))
    return notices


def is_offline_wake(message: PullMessage, connector_id: str) -> bool:
    """True when ``message`` says records were queued for our ``connector_id`` (§8.7)."""
    return any(n.connector_id == connector_id for n in offline_notices(message))


@dataclass(frozen=True)
class ChannelExpire:
    """``channel_expire``: ``reconnect`` with ``new_channel`` in place of ``channel_id``,
    or ``get_config`` (fetch the config again). A ``reconnect`` without a usable
    ``new_channel`` or an unknown action is reported as ``get_config``, the safe path."""

    action: str
    channel_id: str | None = None
    channel_type: str | None = None
    new_channel: Channel | None = None


@dataclass(frozen=True)
class ConfigExpire:
    """``config_expire``: wait a random 10–120 s, fetch the config, reconnect."""


@dataclass(frozen=True)
class ServerRestart:
    """``server_restart``: handled like :class:`ConfigExpire`."""


Control = ChannelExpire | ConfigExpire | ServerRestart


def parse_control(message: PullMessage) -> Control | None:
    """The control command in ``message``, or ``None`` for an ordinary message.

    Module and command names are compared case-insensitively (the JS client upper-cases
    them).
    """
    if message.module_id.lower() != "pull":
        return None
    command = message.command.lower()
    if command == "config_expire":
        return ConfigExpire()
    if command == "server_restart":
        return ServerRestart()
    if command != "channel_expire":
        return None
    params = message.params if isinstance(message.params, Mapping) else {}
    old = params.get("channel")
    old_id = _scalar_text(old.get("id")) if isinstance(old, Mapping) else None
    old_type = _scalar_text(old.get("type")) if isinstance(old, Mapping) else None
    action = params.get("action")
    if action == "reconnect":
        new = parse_channel(params.get("new_channel"), default_type=old_type)
        if new is not None:
            return ChannelExpire("reconnect", old_id, old_type, new)
    return ChannelExpire("get_config", old_id, old_type, None)
