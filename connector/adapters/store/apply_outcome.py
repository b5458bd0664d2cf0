"""What applying one portal record to the ERP tables did (``ErpWriter.apply_many``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.errors import RecordError

__all__ = ["ApplyOutcome"]


@dataclass
class ApplyOutcome:
    """What happened to one record."""

    entity: str
    b24_id: int
    action: str  # inserted | updated | unchanged | deleted | conflict | skipped | error
    conflicts: list[str] = field(default_factory=list)
    pending_push: dict[str, Any] = field(default_factory=dict)
    conflict_id: int | None = None
    error: RecordError | None = None  # set when action == "error"
    erp_key: str | None = None  # the ERP row's key
