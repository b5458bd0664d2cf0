"""The sub-calls a drain cycle sends, built and read back (no I/O here).

* :func:`clear_commands` — the owed ``event.offline.error`` (when records are held) and
  ``event.offline.clear`` of an applied batch;
* :func:`get_command` — ``event.offline.get clear=0`` reserving the next batch;
* :func:`fetch_commands` / :func:`fetched_states` — one ``crm.<entity>.list`` sub-call
  per 50 touched IDs of an entity, and the records they answered, by (entity, ID).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES
from connector.core.batch_commands import Command, CommandOutcome
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import DrainPlan
from connector.service.drain_types import PAGE

__all__ = ["Owed", "clear_commands", "fetch_commands", "fetched_states", "get_command"]

Owed = tuple[str, list[int], list[str]]
"""An applied batch whose clear is still owed: ``(process_id, record IDs, held message IDs)``."""


def clear_commands(owed: Owed) -> list[Command]:
    process_id, record_ids, flagged = owed
    commands = []
    if flagged:
        commands.append(
            Command(
                "flag",
                "event.offline.error",
                {"process_id": process_id, "message_id": list(flagged)},
            )
        )
    commands.append(
        Command("clear", "event.offline.clear", {"process_id": process_id, "id": record_ids})
    )
    return commands


def get_command(limit: int) -> Command:
    return Command("get", "event.offline.get", {"clear": 0, "limit": limit})


def fetch_commands(plan: DrainPlan, mappings: MappingSet) -> list[Command]:
    """The current state of every touched entity: ``filter[@ID]``, 50 IDs a sub-call."""
    commands: list[Command] = []
    for entity, ids in plan.targets().items():
        mapping = mappings.entities[entity]
        for n, start in enumerate(range(0, len(ids), PAGE)):
            commands.append(
                Command(
                    key=f"{entity.replace('.', '_')}_{n}",
                    method=f"{entity}.list",
                    params={
                        "filter": {"@ID": ids[start : start + PAGE]},
                        "select": [*mapping.portal_codes(), *ORIGIN_CODES],
                        "order": {"ID": "ASC"},
                        "start": -1,
                    },
                )
            )
    return commands


def fetched_states(
    commands: Sequence[Command], outcomes: Mapping[str, CommandOutcome]
) -> dict[tuple[str, int], Mapping[str, Any]]:
    """The records the fetch answered; a failed sub-call raises its error."""
    states: dict[tuple[str, int], Mapping[str, Any]] = {}
    for command in commands:
        outcome = outcomes[command.key]
        if outcome.error is not None:
            raise outcome.error
        entity = command.method.removesuffix(".list")
        for row in outcome.result or []:
            if isinstance(row, Mapping) and str(row.get("ID", "")).isdigit():
                states[(entity, int(row["ID"]))] = row
    return states
