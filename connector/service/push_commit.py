"""The local half of a push: after the portal answered, one transaction makes it true here.

For each record of a write batch: a new portal ID goes into ``b24_id`` and a new
``sync_link`` whose base is what was sent; new multi-field value IDs go onto the child
rows; the pushed fields become the base; then the portal's state (read back, or fetched
plus what was sent) goes through the drain's own apply path
(:meth:`ErpWriter.apply_many`), so fields the portal moved meanwhile reach the ERP, a
field both sides moved becomes a conflict, and an ERP edit made since the read stays
pending for the next round. A write the portal refused marks the record ``failed`` with
the portal's code and message; a retriable one goes back to ``pending``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import DONE, FAILED, HELD
from connector.adapters.store.push_state import (
    link_new_record,
    mark_link_deleted,
    rebase_fields,
    set_value_ids,
)
from connector.core.batch_commands import CommandOutcome
from connector.core.mapping_model import EntityMapping
from connector.core.push_commands import match_value_ids
from connector.errors import RecordError, RetriableError
from connector.service.push_planning import PushPlan


def _readback_rows(outcomes: Mapping[str, CommandOutcome]) -> dict[int, Mapping[str, Any]]:
    outcome = outcomes.get("readback")
    if outcome is None or not outcome.ok:
        return {}
    return {
        int(r["ID"]): r
        for r in outcome.result or []
        if isinstance(r, Mapping) and str(r.get("ID", "")).isdigit()
    }


def _refused(plan: PushPlan, outcome: CommandOutcome | None) -> bool:
    """Settle a command that did not go through; True when the plan is finished by it."""
    if outcome is None or not outcome.executed:
        plan.finish("retry", note="not executed; retried next round")
        return True
    error = outcome.error
    if error is None:
        return False
    if plan.kind == "delete" and "not found" in str(error).lower():
        return False  # already gone: that is what we wanted
    if isinstance(error, RetriableError):
        plan.finish("retry", note=f"retried next round: {error}")
        return True
    sent = sorted(plan.sent_codes) or ["(none)"]
    reason = str(error).removeprefix(f"{outcome.method}:").lstrip(": ") or "no reason given"
    plan.finish(
        FAILED,
        code=error.code or (str(error.status) if error.status else "REFUSED"),
        error=(
            f"{plan.label()}: the portal refused {outcome.method}: {reason} "
            f"(fields sent: {', '.join(sent)})"
        ),
    )
    return True


def commit_chunk(
    conn: Connection,
    writer: ErpWriter,
    m: EntityMapping | None,
    chunk: list[PushPlan],
    outcomes: Mapping[str, CommandOutcome],
    now: datetime,
) -> None:
    """Write back one batch's results; sets each plan's status (the caller closes rows)."""
    readback = _readback_rows(outcomes)
    to_apply: list[tuple[PushPlan, Mapping[str, Any] | None]] = []
    for plan in chunk:
        if plan.status is not None or m is None:
            if plan.kind == "unlink" and m is not None:
                mark_link_deleted(conn, m, plan.rec.erp_key, now)
            continue
        outcome = outcomes.get(plan.command.key) if plan.command is not None else None
        if plan.command is not None and _refused(plan, outcome):
            continue
        try:
            post = _settle(conn, writer, m, plan, outcome, readback, now)
        except RecordError as err:
            plan.finish(FAILED, error=f"{plan.label()}: {err.reason} (field {err.field})")
            continue
        if plan.kind == "delete":
            assert plan.command is not None, "a delete is never settled without being sent"
            mark_link_deleted(conn, m, plan.rec.erp_key, now)
            plan.finish(DONE, note="deleted in the portal")
            continue
        to_apply.append((plan, post))
    if not to_apply or m is None:
        return
    items = [(p.b24_id or 0, post, None) for p, post in to_apply]
    for (plan, _post), result in zip(
        to_apply, writer.apply_many(conn, m, items, now=now), strict=True
    ):
        if result.error is not None:
            plan.finish(FAILED, error=f"{plan.label()}: {result.error}")
        elif result.action == "conflict" or plan.conflicts:
            names = ", ".join(result.conflicts or plan.conflicts)
            plan.finish(HELD, note=f"held: conflict on {names} (conflicts list)")
        elif plan.kind == "gone":
            plan.finish(DONE, note="deleted in the portal meanwhile; not pushed")
        else:
            plan.finish(DONE, note="pushed" if plan.command is not None else "nothing to send")


def _settle(
    conn: Connection,
    writer: ErpWriter,
    m: EntityMapping,
    plan: PushPlan,
    outcome: CommandOutcome | None,
    readback: Mapping[int, Mapping[str, Any]],
    now: datetime,
) -> Mapping[str, Any] | None:
    """Link, value IDs and base for one record the portal accepted; its state afterwards."""
    if plan.kind == "gone" or plan.kind == "delete":
        return None
    if plan.kind == "add":
        assert outcome is not None
        plan.b24_id = int(outcome.result)
    assert plan.b24_id is not None
    b24_id = plan.b24_id
    if plan.kind == "add":
        post: Mapping[str, Any] = readback.get(b24_id) or {"ID": b24_id, **plan.sent_plain}
    elif plan.command is not None:
        fetched = dict(plan.portal or {})
        post = readback.get(b24_id) or {**fetched, **plan.sent_plain}
    else:
        post = plan.portal or {"ID": b24_id}
    side = writer._portal_side(m, b24_id, post)
    for mf in m.multifields:
        found = dict(plan.value_ids.get(mf.portal, {}))
        if mf.portal in side and plan.readback:
            found |= match_value_ids(plan.local.children.get(mf.portal, []), side[mf.portal])
        set_value_ids(conn, writer, mf.table, found)
    pushed = dict(plan.pushed)
    for code in list(pushed):
        if isinstance(side.get(code), dict):  # the portal's own pairs after the write
            pushed[code] = writer._multi_key(side[code])
    if plan.kind == "add" or plan.adopted:
        base = dict(plan.base or {}) if plan.adopted else {}
        base |= pushed
        link_new_record(conn, writer, m, plan.local, b24_id, base, now)
    elif pushed:
        rebase_fields(conn, writer, m, b24_id, pushed, now)
    return post
