"""The request log: one :class:`LogEntry` per request the emulator saw (REST, webhook or
OAuth), without tokens or secrets. ``Emulator.log`` keeps the newest entries; the
control surface reads them (``requests()``, ``GET /_emulator/log``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LogEntry:
    """One request as the emulator saw it (no tokens or secrets)."""

    seq: int
    time: float
    portal: str
    method: str
    params: dict[str, Any]
    auth_connector: str = ""
    client_id: str | None = None
    webhook_user: int | None = None
    status: int = 200
    error: str | None = None
    accepted: bool | None = None
    kind: str = "rest"
    sub_calls: list[dict[str, Any]] = field(default_factory=list)
    """For ``batch``: each sub-command's key, method, params, auth_connector, error."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "portal": self.portal,
            "method": self.method,
            "params": self.params,
            "auth_connector": self.auth_connector,
            "client_id": self.client_id,
            "webhook_user": self.webhook_user,
            "status": self.status,
            "error": self.error,
            "accepted": self.accepted,
            "kind": self.kind,
            "sub_calls": self.sub_calls,
        }
