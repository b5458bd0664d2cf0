"""What the drain and the backfill need from the REST client, and what a drain counts.

:class:`PortalCalls` is the slice of ``adapters/rest_client.RestClient`` the drainer uses
(one call, one batch); :class:`DrainStats` adds up batches for ``run``'s metrics, ``sync
--once``'s summary and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.core.batch_commands import Command, CommandOutcome

__all__ = ["PAGE", "QUEUE_LIMIT", "Answerish", "DrainStats", "PortalCalls"]

PAGE = 50
QUEUE_LIMIT = 500
"""Records per ``event.offline.get`` (``B24_QUEUE_LIMIT``): the source has no cap (A7)."""


class Answerish(Protocol):
    @property
    def result(self) -> Any: ...


class PortalCalls(Protocol):
    """What the drainer needs from the REST client (``connector.adapters.rest_client``)."""

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Answerish: ...

    async def batch(
        self, commands: Sequence[Command], *, halt: bool = False
    ) -> dict[str, CommandOutcome]: ...


@dataclass
class DrainStats:
    batches: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    conflicts: int = 0
    bad: int = 0
    resumed: int = 0
    lag_s: float = 0.0  # age of the oldest portal change a batch took (the largest seen)
    by_entity: dict[str, int] = field(default_factory=dict)  # records applied, per entity

    def add(self, other: DrainStats) -> None:
        for name in vars(self):
            if name == "lag_s":
                self.lag_s = max(self.lag_s, other.lag_s)
            elif name == "by_entity":
                for entity, n in other.by_entity.items():
                    self.by_entity[entity] = self.by_entity.get(entity, 0) + n
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))
