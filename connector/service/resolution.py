"""What an operator's resolution is, and the step it records on its conflict: used by
:mod:`connector.service.resolver` and the ``conflicts`` verbs. The conflict row is read
and written through :mod:`connector.adapters.store.conflict_rows`; the other rows a
resolution changes, by the resolver through :mod:`connector.adapters.store.resolution_rows`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from connector.adapters.store.conflict_rows import DELETED_FIELD, conflict_row, update_conflict
from connector.errors import ConfigError


@dataclass
class Resolution:
    conflict_id: int
    keep: str | None = None  # portal | erp
    fields: Sequence[str] = ()
    values: Mapping[str, str] = field(default_factory=dict)
    ignore: bool = False
    by: str = ""

    @property
    def mode(self) -> str:
        return "ignore" if self.ignore else ("value" if self.values else f"keep {self.keep}")


@dataclass
class Outcome:
    conflict_id: int
    done: bool  # False: it was not open (nothing was done)
    message: str
    remaining: list[str] = field(default_factory=list)


def load_conflict(engine: Engine, conflict_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conflict_row(conn, conflict_id)
    if row is None:
        raise ConfigError(f"no conflict {conflict_id} (see: b24-connector conflicts list)")
    return row


def choose_fields(res: Resolution, names: list[str], m: Any) -> list[str]:
    """The conflicted fields this resolution settles; exit 2 naming any unknown one."""
    modes = sum([res.keep is not None, bool(res.values), res.ignore])
    if modes != 1:
        raise ConfigError("conflicts resolve: give exactly one of --keep, --value, --ignore")
    asked = [f.upper() for f in (res.values if res.values else res.fields)]
    for name in asked:
        if name not in names:
            raise ConfigError(
                f"conflict {res.conflict_id} has no field {name} (fields: {', '.join(names)})"
            )
    if res.values and DELETED_FIELD in names:
        raise ConfigError(
            f"conflict {res.conflict_id} is a delete against an edit: use --keep or --ignore"
        )
    for name in res.values:
        if m.field_by_portal(name) is None:
            raise ConfigError(
                f"--value does not apply to the multi-field {name}; use --keep portal|erp"
            )
    return asked or names


def close_conflict(
    conn: Connection, res: Resolution, row: Mapping[str, Any], chosen: list[str], now: datetime
) -> None:
    """Record the step; the conflict is closed once no field is left open."""
    remaining = {k: v for k, v in (row["fields"] or {}).items() if k not in chosen}
    resolution = {
        "mode": res.mode,
        "fields": chosen,
        "values": dict(res.values),
        "at": now.isoformat(),
        "by": res.by,
    }
    history = [*(row.get("resolution") or {}).get("steps", []), resolution]
    values: dict[str, Any] = {"resolution": {"steps": history}}
    if remaining:
        values["fields"] = remaining
    else:
        values.update(
            status="ignored" if res.ignore else "resolved", resolved_at=now, resolved_by=res.by
        )
    update_conflict(conn, row["id"], values)
