"""What the pusher sends: ``crm.<entity>.add/update`` fields built from ERP values.

Pure functions over plain data. A multi-field child row is a :class:`ChildRow`; the
portal's values of one multi-field are ``{value_id: (VALUE_TYPE, VALUE)}``. The portal's
multi-field rules (digest §9) decide the shape of what is sent:

* a value without ``ID`` is **added**;
* a value with its ``ID`` **changes** that value;
* its ``ID`` with an empty ``VALUE`` **deletes** it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.core.field_values import to_portal
from connector.core.mapping_model import EntityMapping
from connector.core.multi_merge import FinalValue

PortalValues = Mapping[int, tuple[str, str]]


@dataclass(frozen=True)
class ChildRow:
    """One ERP multi-field row: its own id, the portal's value ID (None: never pushed)."""

    row_id: int
    value_id: int | None
    value_type: str
    value: str


def _item(row: ChildRow, *, with_id: bool) -> dict[str, str]:
    item: dict[str, str] = {"VALUE": row.value}
    if row.value_type:
        item["VALUE_TYPE"] = row.value_type
    if with_id and row.value_id is not None:
        item["ID"] = str(row.value_id)
    return item


def multi_changes(children: Sequence[ChildRow], portal: PortalValues) -> list[dict[str, str]]:
    """The items that turn the portal's values of one multi-field into the ERP's rows."""
    items: list[dict[str, str]] = []
    kept: set[int] = set()
    for row in children:
        if row.value_id is not None and row.value_id in portal:
            kept.add(row.value_id)
            if portal[row.value_id] != (row.value_type or portal[row.value_id][0], row.value):
                items.append(_item(row, with_id=True))
        else:
            items.append(_item(row, with_id=False))
    items += [{"ID": str(vid), "VALUE": ""} for vid in portal if vid not in kept]
    return items


def match_value_ids(children: Sequence[ChildRow], portal: PortalValues) -> dict[int, int]:
    """``{row_id: value_id}`` for child rows that lack (or lost) their portal value ID.

    Each portal value not yet owned by a row goes to the first row with the same value and
    type, then to the first row with the same value.
    """
    owned = {r.value_id for r in children if r.value_id is not None and r.value_id in portal}
    free = {vid: pair for vid, pair in portal.items() if vid not in owned}
    orphans = [r for r in children if r.value_id is None or r.value_id not in portal]
    found: dict[int, int] = {}
    for exact in (True, False):
        for row in orphans:
            if row.row_id in found:
                continue
            for vid, (vtype, value) in free.items():
                if value == row.value and (not exact or vtype == row.value_type):
                    found[row.row_id] = vid
                    del free[vid]
                    break
    return found


def field_values(
    m: EntityMapping, values: Mapping[str, Any], *, record_id: object, codes: Sequence[str]
) -> dict[str, str]:
    """Portal strings for the plain fields ``codes`` from canonical ERP ``values``."""
    out: dict[str, str] = {}
    for fm in m.fields:
        if fm.portal in codes and fm.reaches_portal:
            out[fm.portal] = to_portal(
                fm, values.get(fm.portal), entity=m.entity, record_id=record_id
            )
    return out


def add_fields(
    m: EntityMapping,
    values: Mapping[str, Any],
    children: Mapping[str, Sequence[ChildRow]],
    *,
    originator: str,
    origin_id: str,
) -> dict[str, Any]:
    """``fields`` of ``crm.<entity>.add`` for a new ERP row: every pushable field that has
    a value, every multi-field row, and the ERP key in ``ORIGINATOR_ID`` / ``ORIGIN_ID`` so
    the record can be found again after an ambiguous failure."""
    codes = [fm.portal for fm in m.fields if values.get(fm.portal) is not None]
    fields: dict[str, Any] = field_values(m, values, record_id=origin_id, codes=codes)
    for mf in m.multifields:
        rows = children.get(mf.portal) or []
        if mf.direction.value != "to_erp" and rows:
            fields[mf.portal] = [_item(r, with_id=False) for r in rows]
    fields["ORIGINATOR_ID"] = originator
    fields["ORIGIN_ID"] = origin_id
    return fields


def final_changes(final: Sequence[FinalValue], portal: PortalValues) -> list[dict[str, str]]:
    """The items that turn the portal's values into a field merged value by value: the
    ERP's changes by ID, its additions without one, its deletions by ID."""
    items: list[dict[str, str]] = []
    kept: set[int] = set()
    for value in final:
        vtype, text = value.pair
        if value.value_id is not None and value.value_id in portal:
            kept.add(value.value_id)
            if portal[value.value_id] != value.pair:
                items.append({"ID": str(value.value_id), "VALUE": text, "VALUE_TYPE": vtype})
        elif value.value_id is None:
            items.append({"VALUE": text, **({"VALUE_TYPE": vtype} if vtype else {})})
    items += [{"ID": str(vid), "VALUE": ""} for vid in portal if vid not in kept]
    return items
