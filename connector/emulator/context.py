"""Who is calling: the app (or webhook), the user, the connector key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Firing:
    """One entity event fired during a request, before queueing."""

    event_name: str
    event_data: dict[str, object]
    user_id: int


@dataclass
class CallContext:
    """Everything a method handler may need to know about its caller.

    * ``client_id`` — the calling app (``None`` for a webhook or a UI user).
    * ``user_id`` — the user whose rights apply; ``is_admin`` — that user is an admin.
    * ``auth_connector`` — the auth-level connector key of the request (``""`` if absent).
    * ``via_webhook`` — called through ``/rest/<uid>/<secret>/``.
    * ``base_url`` — scheme://host:port the request came in on (for URLs in answers).
    * ``firings`` — entity events fired during this request; the app turns them into
      queue records and one ``event_offline`` push per (app, connector) at request end.
    * ``batch_calls`` — one entry per ``batch`` sub-command run in this request (key,
      method, params, effective ``auth_connector``, error code); the request log keeps it.
    """

    client_id: str | None
    user_id: int
    is_admin: bool
    auth_connector: str = ""
    via_webhook: bool = False
    scopes: frozenset[str] = frozenset()
    base_url: str = ""
    firings: list[Firing] = field(default_factory=list)
    queued: dict[tuple[str, str], int] = field(default_factory=dict)
    batch_calls: list[dict[str, Any]] = field(default_factory=list)
