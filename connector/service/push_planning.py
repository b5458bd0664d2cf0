"""What to do with one claimed outbox record: add, update, delete, hold, or nothing.

:func:`plan_record` decides from the ERP side alone (row present? linked? conflict open?);
:func:`plan_update` finishes the plan once the portal's state is known, through the
three-way merge against ``sync_link.base``: only the fields the ERP moved are sent, a
field the portal moved too follows its conflict policy, and a record whose ERP values
equal the base sends nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import DONE, FAILED, HELD, PendingRecord
from connector.adapters.store.push_state import LocalRecord, erp_values
from connector.core.batch_commands import Command
from connector.core.mapping_model import DeletePolicy, EntityMapping
from connector.core.merge import FieldRule, merge_record
from connector.core.multi_merge import ErpValue
from connector.core.push_commands import (
    add_fields,
    field_values,
    final_changes,
    match_value_ids,
    multi_changes,
)
from connector.errors import RecordError

NO_EVENTS = {"REGISTER_SONET_EVENT": "N"}


@dataclass
class PushPlan:
    rec: PendingRecord
    m: EntityMapping | None
    local: LocalRecord
    kind: str = "skip"  # add | update | delete | unlink | gone | skip | hold
    b24_id: int | None = None
    portal: Mapping[str, Any] | None = None  # the portal's record, as fetched
    adopted: bool = False  # found by ORIGIN_ID after an uncertain add
    command: Command | None = None
    pushed: dict[str, Any] = field(default_factory=dict)  # merge-form values sent
    sent_plain: dict[str, str] = field(default_factory=dict)  # plain fields as sent
    value_ids: dict[str, dict[int, int]] = field(default_factory=dict)  # code → row → vid
    sent_codes: list[str] = field(default_factory=list)  # mapped fields in the command
    readback: bool = False  # new multi-field values: their IDs must be read back
    conflicts: list[str] = field(default_factory=list)
    base: dict[str, Any] | None = None  # the merge base used (an adopted record's new base)
    status: str | None = None  # None while open; done | failed | held | retry
    note: str = ""
    error: str | None = None
    error_code: str | None = None

    def finish(
        self, status: str, *, note: str = "", error: str | None = None, code: str | None = None
    ) -> None:
        self.status, self.note, self.error, self.error_code = status, note, error, code

    def adopt(self, b24_id: int, row: Mapping[str, Any]) -> None:
        """An earlier, lost add did reach the portal as ``b24_id``: take that record."""
        self.b24_id, self.portal = b24_id, row
        if self.kind == "gone_add":  # … and the ERP has deleted the row since
            assert self.m is not None
            if self.m.delete_policy is DeletePolicy.DELETE:
                self.kind = "delete"
            else:
                self.kind = "skip"
                self.finish(
                    DONE,
                    note=(
                        f"deleted in the ERP; kept in the portal as {b24_id} "
                        f"(delete_policy: {self.m.delete_policy.value})"
                    ),
                )
            return
        self.kind, self.adopted = "update", True

    @property
    def key(self) -> str:
        return f"w{self.rec.row_ids[0]}"

    def label(self) -> str:
        entity = self.m.entity if self.m else self.rec.entity
        where = f" (portal id {self.b24_id})" if self.b24_id is not None else ""
        return f"{entity} ERP key {self.rec.erp_key}{where}"


def plan_record(
    m: EntityMapping, writer: ErpWriter, rec: PendingRecord, local: LocalRecord
) -> PushPlan:
    plan = PushPlan(rec, m, local, b24_id=local.b24_id)
    if local.conflict_open:
        plan.kind = "hold"
        plan.finish(HELD, note="held: the record has an open conflict (conflicts list)")
    elif local.row is None:
        link = local.link
        if (link is None or link.get("b24_id") is None) and rec.retried:
            plan.kind = "gone_add"  # an earlier try may have added it: look it up first
        elif link is None or link.get("b24_id") is None or link.get("deleted"):
            plan.finish(DONE, note="deleted in the ERP before it reached the portal")
        elif m.delete_policy is DeletePolicy.DELETE:
            plan.kind = "delete"
        else:
            plan.kind = "unlink"
            plan.finish(
                DONE,
                note=(
                    f"deleted in the ERP; kept in the portal "
                    f"(delete_policy: {m.delete_policy.value} deletes in the portal only "
                    "with delete)"
                ),
            )
    else:
        plan.kind = "add" if local.b24_id is None else "update"
        if plan.kind == "update" and _equals_base(m, writer, local):
            plan.kind = "skip"  # an echo of what both sides agreed: no REST call at all
            plan.finish(DONE, note="nothing to send: equal to the last agreed state")
    return plan


def _equals_base(m: EntityMapping, writer: ErpWriter, local: LocalRecord) -> bool:
    if local.link is None or local.link.get("deleted"):
        return False
    base = writer._base(m, local.link.get("base"))
    if base is None:
        return False
    values = erp_values(m, local)
    pushable = [fm.portal for fm in m.fields if fm.reaches_portal]
    pushable += [mf.portal for mf in m.multifields if mf.direction.value != "to_erp"]
    if any(code not in base or values[code] != base[code] for code in pushable):
        return False
    owned = [r for rows in local.children.values() for r in rows]
    return all(r.value_id is not None for r in owned)  # unsent rows still need their IDs


def _rules(m: EntityMapping) -> dict[str, FieldRule]:
    rules = {fm.portal: FieldRule(fm.direction, fm.conflict) for fm in m.fields}
    rules |= {mf.portal: FieldRule(mf.direction, mf.conflict) for mf in m.multifields}
    return rules


def plan_update(plan: PushPlan, writer: ErpWriter, connector_id: str) -> None:
    """Build the plan's command (or none) from the ERP row and the portal's record."""
    if plan.status is not None or plan.m is None:
        return
    m = plan.m
    try:
        if plan.kind == "add":
            _plan_add(plan, m, connector_id)
        elif plan.kind == "update":
            _plan_change(plan, m, writer)
        elif plan.kind == "delete":
            plan.command = Command(plan.key, f"{m.entity}.delete", {"id": plan.b24_id})
    except RecordError as err:
        plan.finish(FAILED, error=f"{plan.label()}: {err.reason} (field {err.field})")


def _plan_add(plan: PushPlan, m: EntityMapping, connector_id: str) -> None:
    values = erp_values(m, plan.local)
    fields = add_fields(
        m, values, plan.local.children, originator=connector_id, origin_id=plan.rec.erp_key
    )
    plan.sent_plain = {k: v for k, v in fields.items() if isinstance(v, str)}
    plan.pushed = {fm.portal: values[fm.portal] for fm in m.fields if fm.reaches_portal}
    for mf in m.multifields:
        if mf.direction.value != "to_erp":
            plan.pushed[mf.portal] = values[mf.portal]  # () when the ERP has none
        if mf.portal in fields:
            plan.readback = True
    plan.sent_codes = sorted(k for k in fields if k not in ("ORIGINATOR_ID", "ORIGIN_ID"))
    plan.command = Command(plan.key, f"{m.entity}.add", {"fields": fields, "params": NO_EVENTS})


def _plan_change(plan: PushPlan, m: EntityMapping, writer: ErpWriter) -> None:
    assert plan.b24_id is not None
    if plan.portal is None:
        return  # gone from the portal: the commit applies the delete locally
    portal_side = writer._portal_side(m, plan.b24_id, plan.portal)
    children = dict(plan.local.children)
    if plan.adopted:  # our own earlier add: give the ERP rows the value IDs it created
        for mf in m.multifields:
            theirs = portal_side.get(mf.portal) or {}
            found = match_value_ids(children.get(mf.portal, []), theirs)
            if found:
                plan.value_ids[mf.portal] = found
                children[mf.portal] = [
                    replace(r, value_id=found.get(r.row_id, r.value_id))
                    for r in children.get(mf.portal, [])
                ]
    portal_cmp = {
        k: (writer._multi_key(v) if isinstance(v, dict) else v) for k, v in portal_side.items()
    }
    erp_cmp = erp_values(m, plan.local)
    # What an earlier, interrupted round sent (its answer never got committed here).
    sent = writer._base(m, plan.rec.sent) or {}
    if plan.adopted:
        # The lost add is the base: what it sent, and nothing where it sent nothing — so
        # the portal's own defaults come back to the ERP instead of being wiped.
        base: dict[str, Any] | None = {
            code: sent.get(code, () if isinstance(value, tuple) else None)
            for code, value in portal_cmp.items()
        }
        if not sent:  # no record of it: the ERP's non-empty values are what an add sends
            base = {
                code: (value if erp_cmp.get(code) not in (None, ()) else erp_cmp.get(code))
                for code, value in portal_cmp.items()
            }
    else:
        link = plan.local.link
        base = writer._base(m, link["base"]) if link else None
        if base is not None:  # a portal value equal to what we sent is our own write
            base |= {c: v for c, v in sent.items() if portal_cmp.get(c, object()) == v}
    plan.base = base
    multi = {
        mf.portal: (
            portal_side.get(mf.portal) or {},
            [
                ErpValue(r.row_id, r.value_id, (r.value_type, r.value))
                for r in children.get(mf.portal, [])
            ],
        )
        for mf in m.multifields
    }
    result = merge_record(_rules(m), base, portal_cmp, erp_cmp, multi=multi)
    plan.conflicts = sorted(result.conflicts)
    codes = [c for c in result.to_portal if m.field_by_portal(c) is not None]
    fields: dict[str, Any] = field_values(m, erp_cmp, record_id=plan.b24_id, codes=codes)
    plan.sent_plain = dict(fields)
    for mf in m.multifields:
        if mf.portal not in result.to_portal:
            continue
        theirs = portal_side.get(mf.portal) or {}
        if mf.portal in result.multi:  # merged value by value: send only the ERP's part
            items = final_changes(result.multi[mf.portal], theirs)
        else:
            items = multi_changes(children.get(mf.portal, []), theirs)
        if items:
            fields[mf.portal] = items
            plan.readback = True
    # A field merged value by value is not re-based here: the commit's apply sees the old
    # base, merges again, and brings the portal's part into the ERP rows.
    plan.pushed = {
        c: result.to_portal[c] for c in result.to_portal if c in fields and c not in result.multi
    }
    plan.sent_codes = sorted(fields)
    if fields:
        plan.command = Command(
            plan.key,
            f"{m.entity}.update",
            {"id": plan.b24_id, "fields": fields, "params": NO_EVENTS},
        )
