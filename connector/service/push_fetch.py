"""What a push round reads from the portal before it writes, in one ``batch``.

* the current state of every record to update (``crm.<entity>.list filter[@ID]``, up to
  50 per sub-call), so the three-way merge sees what the portal holds now; a record no
  longer there was deleted in the portal (the drain path marks it);
* for an add retried after a crash, a lookup by ``ORIGINATOR_ID`` + ``ORIGIN_ID``: an
  earlier try that did reach the portal is adopted, never added again;
* for a retried delete, whether the record is still there: never delete twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import DONE
from connector.core.batch_commands import Command
from connector.core.mapping_model import MappingSet
from connector.errors import RetriableError
from connector.service.drain_types import PortalCalls
from connector.service.push_planning import PushPlan, plan_update

__all__ = ["fetch_states"]

log = logging.getLogger("connector.service.pusher")


async def fetch_states(
    portal: PortalCalls,
    mappings: MappingSet,
    writer: ErpWriter,
    connector_id: str,
    plans: list[PushPlan],
) -> None:
    """The portal's state of every record to update, and lookups of uncertain adds, in
    one ``batch``; then each update is planned against what the portal holds."""
    commands: list[Command] = []
    wanted: dict[str, list[int]] = {}
    checked_deletes: set[tuple[str, int | None]] = set()
    for plan in plans:
        # a retried delete may have reached the portal before a crash: look first
        retried_delete = plan.kind == "delete" and plan.rec.retried
        if (plan.kind == "update" or retried_delete) and plan.b24_id is not None:
            assert plan.m is not None
            wanted.setdefault(plan.m.entity, []).append(plan.b24_id)
            if retried_delete:
                checked_deletes.add((plan.m.entity, plan.b24_id))
    for entity, ids in wanted.items():
        m = mappings.entities[entity]
        for n, start in enumerate(range(0, len(ids), 50)):
            commands.append(
                Command(
                    f"f_{entity.replace('.', '_')}_{n}",
                    f"{entity}.list",
                    {
                        "filter": {"@ID": ids[start : start + 50]},
                        "select": m.portal_codes(),
                        "order": {"ID": "ASC"},
                        "start": -1,
                    },
                )
            )
    lookups: dict[str, PushPlan] = {}
    for n, plan in enumerate(plans):
        if plan.kind in ("add", "gone_add") and plan.rec.retried:
            assert plan.m is not None
            key = f"l_{n}"
            lookups[key] = plan
            commands.append(
                Command(
                    key,
                    f"{plan.m.entity}.list",
                    {
                        "filter": {
                            "ORIGINATOR_ID": connector_id,
                            "ORIGIN_ID": plan.rec.erp_key,
                        },
                        "select": plan.m.portal_codes(),
                        "order": {"ID": "ASC"},
                        "start": -1,
                    },
                )
            )
    if not commands:
        for plan in plans:
            plan_update(plan, writer, connector_id)
        return
    outcomes = await portal.batch(commands)
    states: dict[tuple[str, int], Mapping[str, Any]] = {}
    for command in commands:
        outcome = outcomes[command.key]
        if outcome.error is not None:
            raise (
                outcome.error
                if isinstance(outcome.error, RetriableError)
                else RetriableError(
                    f"push: reading the portal failed: {outcome.error}", method=command.method
                )
            )
        rows = [r for r in (outcome.result or []) if isinstance(r, Mapping)]
        if command.key in lookups:
            plan = lookups[command.key]
            if not rows and plan.kind == "gone_add":
                plan.kind = "skip"
                plan.finish(DONE, note="deleted in the ERP before it reached the portal")
            if rows:  # an earlier try did add it: take that record, never add again
                plan.adopt(int(rows[0]["ID"]), rows[0])
                log.info(
                    "%s %s: found in the portal as %s by ORIGIN_ID; not added again",
                    command.method.removesuffix(".list"),
                    plan.rec.erp_key,
                    plan.b24_id,
                )
            continue
        entity = command.method.removesuffix(".list")
        for row in rows:
            if str(row.get("ID", "")).isdigit():
                states[(entity, int(row["ID"]))] = row
    for plan in plans:
        entity = plan.m.entity if plan.m is not None else ""
        looked_up = (entity, plan.b24_id) in checked_deletes
        if plan.kind == "delete" and looked_up and (entity, plan.b24_id) not in states:
            plan.kind = "unlink"  # an earlier try deleted it: never delete twice
            plan.finish(DONE, note="already deleted in the portal (an earlier try)")
        if plan.kind == "update" and plan.portal is None and plan.m is not None:
            assert plan.b24_id is not None
            plan.portal = states.get((plan.m.entity, plan.b24_id))
            if plan.portal is None:
                plan.kind = "gone"  # deleted in the portal; the drain path marks it
        plan_update(plan, writer, connector_id)
