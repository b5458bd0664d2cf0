"""Push&Pull messages and how they are framed on the wire (seed L2073–2131).

* Server version ≤3, or version 4 without ``format=json``: each message as
  ``#!NGINXNMS!#{json}#!NGINXNME!#``, several concatenated in one frame / body.
* Version 4 with ``format=json``: one JSON array of message objects.
* Version ≥5: JSON-RPC 2.0, one ``incoming.message`` request per message (a JSON-RPC
  batch array when there are several), ``params = {mid, body, sender}`` with ``body`` the
  ``text`` object — the shape Bitrix's own JS client (``BX.PullClient``) handles. A
  client that only speaks versions ≤4 can tell by ``server.version`` and by the frame.

Message object: ``id, mid, channel, tag, time, text{module_id, command, params}, extra``.
``extra`` goes inside ``text`` by default: the seed's own JSON structure (L2091–2111) puts
it there, the framed samples (L2077) carry the extra ``}`` that placement leaves behind,
and Bitrix's JS client reads ``text.extra``. ``extra_in_text=False`` moves it next to
``text`` (digest A21: clients should accept both).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

NGINX_START = "#!NGINXNMS!#"
NGINX_END = "#!NGINXNME!#"


@dataclass(frozen=True)
class PullMessage:
    """One published message. ``created`` is seconds since the epoch on the test clock."""

    id: int
    channel: str
    channel_type: str
    client_id: str
    tag: str
    created: float
    module_id: str
    command: str
    params: Any

    @property
    def mid(self) -> str:
        """Seed-shaped message id: 10-digit unix time + 16-digit sequence (L2093)."""
        return f"{int(self.created):010d}{self.id:016d}"


def mid_sequence(mid: str) -> int | None:
    """The sequence number inside a ``mid`` (``None`` if it is not one of ours)."""
    if len(mid) != 26 or not mid.isdigit():
        return None
    return int(mid[10:])


@dataclass(frozen=True)
class WireOptions:
    """How to render messages: server facts plus the ``extra`` placement switch."""

    iso: Callable[[float], str]
    now: float
    server_name: str
    revision: int
    revision_mobile: int
    extra_in_text: bool = True


def message_object(msg: PullMessage, opts: WireOptions) -> dict[str, Any]:
    """The JSON object of one message as the client receives it."""
    extra = {
        "server_time": opts.iso(msg.created),
        "server_time_unix": int(msg.created),
        "server_time_ago": max(0, int(opts.now - msg.created)),
        "server_name": opts.server_name,
        "revision": opts.revision,
        "revisionMobile": opts.revision_mobile,
        "channel": msg.channel,
    }
    text: dict[str, Any] = {
        "module_id": msg.module_id,
        "command": msg.command,
        "params": msg.params,
    }
    out: dict[str, Any] = {
        "id": msg.id,
        "mid": msg.mid,
        "channel": msg.channel,
        "tag": msg.tag,
        "time": formatdate(msg.created, usegmt=True),
        "text": text,
    }
    if opts.extra_in_text:
        text["extra"] = extra
    else:
        out["extra"] = extra
    return out


def _rpc(obj: dict[str, Any]) -> dict[str, Any]:
    body = dict(obj["text"])
    body.setdefault("extra", obj.get("extra", {}))
    return {
        "jsonrpc": "2.0",
        "method": "incoming.message",
        "params": {"mid": obj["mid"], "body": body, "sender": {"type": 2, "id": ""}},
    }


def encode(
    messages: Sequence[PullMessage], opts: WireOptions, *, version: int, json_format: bool
) -> str:
    """One WebSocket text frame / long-poll body carrying ``messages``."""
    objects = [message_object(m, opts) for m in messages]
    if version >= 5:
        calls = [_rpc(o) for o in objects]
        return json.dumps(calls[0] if len(calls) == 1 else calls)
    if version >= 4 and json_format:
        return json.dumps(objects)
    return "".join(f"{NGINX_START}{json.dumps(o)}{NGINX_END}" for o in objects)


def media_type(version: int, json_format: bool) -> str:
    """Content type of a long-poll body in the given framing."""
    if version >= 5 or (version >= 4 and json_format):
        return "application/json"
    return "text/plain"
