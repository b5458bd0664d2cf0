"""What a backfill talks to and reports: the portal slice it pages through, its counts
and its progress hooks, and which mappings a ``--entity`` list names (shared with
``reconcile``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from connector.core.batch_commands import MAX_COMMANDS, CommandOutcome
from connector.core.id_window import IdWindow
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.errors import ConfigError
from connector.service.backfill_window import EntityStats
from connector.service.drain_types import Answerish

__all__ = [
    "BackfillProgress",
    "BackfillStats",
    "BindingsAnswer",
    "PagingPortal",
    "resolve_entities",
]


class BindingsAnswer(Protocol):
    """What ``ensure_bindings`` returns, as far as backfill reads it."""

    @property
    def probes(self) -> Mapping[str, CommandOutcome]: ...


class PagingPortal(Protocol):
    """What the backfill needs from the REST client (``RestClient``)."""

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Answerish: ...

    def iter_pages(
        self,
        window: IdWindow,
        *,
        after: int = 0,
        batched: bool = True,
        pages_per_request: int = MAX_COMMANDS,
    ) -> AsyncIterator[list[Mapping[str, Any]]]: ...


@dataclass
class BackfillStats:
    """The whole run, per entity and in total."""

    entities: dict[str, EntityStats] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.entities.values())

    @property
    def records(self) -> int:
        return self.total("records")

    def as_dict(self) -> dict[str, Any]:
        return {
            e: {f.name: getattr(s, f.name) for f in fields(s)} for e, s in self.entities.items()
        }


class BackfillProgress(Protocol):
    """Where progress goes (a rich bar on a TTY, log lines otherwise, nothing in tests)."""

    def entity_started(self, entity: str, *, after: int, top_id: int | None) -> None: ...

    def window_applied(self, entity: str, stats: EntityStats) -> None: ...

    def entity_done(self, entity: str, stats: EntityStats) -> None: ...


def resolve_entities(mappings: MappingSet, names: Iterable[str] | None) -> list[EntityMapping]:
    """The mappings to backfill: all (``None``/empty) or the named ones, in mapping order.

    ``crm.company`` and ``company`` both name the company mapping; an unknown name is a
    :class:`~connector.errors.ConfigError` listing the mapped entities.
    """
    wanted = [n.strip() for n in (names or ()) if n.strip()]
    if not wanted:
        return list(mappings)
    chosen: list[str] = []
    for name in wanted:
        key = name.lower()
        if not key.startswith("crm."):
            key = f"crm.{key}"
        if key not in mappings.entities:
            known = ", ".join(mappings.entities) or "none"
            raise ConfigError(f"--entity {name}: not a mapped entity (mapped: {known})")
        if key not in chosen:
            chosen.append(key)
    return [m for m in mappings if m.entity in chosen]
