"""A multi-field (PHONE, EMAIL, WEB, IM) changed on both sides, merged value by value.

The base of a multi-field is the multiset of ``(VALUE_TYPE, VALUE)`` pairs both sides
last agreed on. The portal's values carry their value IDs; the ERP's child rows carry the
value ID they were synced with (none for a row the ERP added). Each value is then judged
on its own, the way a field is:

* a value ID both sides hold: equal → kept; one side still holds the base's pair → the
  other side's change wins; both changed it → conflict;
* a value ID only the portal holds: its pair is in the base → the ERP deleted it; not →
  the portal added it;
* an ERP row the portal does not hold: its pair is in the base → the portal deleted it;
  not → the ERP added it.

Disjoint edits (a phone changed in the portal, another added in the ERP) therefore merge;
the same value changed on both sides stays a conflict for the operator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Pair = tuple[str, str]


@dataclass(frozen=True)
class ErpValue:
    """One ERP child row: its own id, the portal value ID it holds (None: never synced)."""

    row_id: int
    value_id: int | None
    pair: Pair


@dataclass(frozen=True)
class FinalValue:
    """One value of the merged field: where it lives now, and what it holds."""

    value_id: int | None  # the portal's ID (None: an ERP addition not in the portal yet)
    row_id: int | None  # the ERP row (None: a portal addition not in the ERP yet)
    pair: Pair


def merge_values(
    base: Sequence[Pair], portal: Mapping[int, Pair], erp: Sequence[ErpValue]
) -> list[FinalValue] | None:
    """The merged values, or None when the same value changed on both sides."""
    pool = Counter(base)

    def in_base(pair: Pair) -> bool:
        if pool[pair] > 0:
            pool[pair] -= 1
            return True
        return False

    final: list[FinalValue] = []
    by_id = {e.value_id: e for e in erp if e.value_id is not None and e.value_id in portal}
    # Values both hold first, so that their base pairs are consumed before the one-sided.
    both_changed: list[int] = []
    undecided: list[tuple[int, ErpValue]] = []
    for vid, pair in portal.items():
        row = by_id.get(vid)
        if row is None:
            continue
        if row.pair == pair:
            in_base(pair)
            final.append(FinalValue(vid, row.row_id, pair))
        else:
            undecided.append((vid, row))
    for vid, row in undecided:
        pair = portal[vid]
        if in_base(row.pair):  # the ERP still holds the base: the portal changed it
            final.append(FinalValue(vid, row.row_id, pair))
        elif in_base(pair):  # the portal still holds the base: the ERP changed it
            final.append(FinalValue(vid, row.row_id, row.pair))
        else:
            both_changed.append(vid)
    if both_changed:
        return None
    for vid, pair in portal.items():
        if vid in by_id:
            continue
        if not in_base(pair):  # not agreed before: the portal added it
            final.append(FinalValue(vid, None, pair))
        # else: the ERP deleted it
    for row in erp:
        if row.value_id is not None and row.value_id in portal:
            continue
        if not in_base(row.pair):  # not agreed before: the ERP added it
            final.append(FinalValue(None, row.row_id, row.pair))
        # else: the portal deleted it
    return final


def pairs_of(values: Sequence[FinalValue]) -> tuple[Pair, ...]:
    """The merge form of a multi-field: its pairs, sorted."""
    return tuple(sorted(v.pair for v in values))


@dataclass
class ChildOps:
    """The statements that turn an ERP owner's child rows into the wanted values."""

    gone: list[int]  # row ids to delete
    changed: list[tuple[int, Pair]]  # row id → new pair
    added: list[tuple[int, Pair]]  # portal value ID → pair, rows to insert


def child_ops(
    rows: Sequence[ErpValue], wanted: Mapping[int, Pair], keep: frozenset[int] = frozenset()
) -> ChildOps:
    """Rows by value ID follow ``wanted``; rows in ``keep`` (ERP additions a merge kept)
    stay as they are; every other row goes."""
    ops = ChildOps([], [], [])
    held: set[int] = set()
    for row in rows:
        if row.row_id in keep:
            continue
        if row.value_id is not None and row.value_id in wanted and row.value_id not in held:
            held.add(row.value_id)
            if row.pair != wanted[row.value_id]:
                ops.changed.append((row.row_id, wanted[row.value_id]))
        else:
            ops.gone.append(row.row_id)
    ops.added = [(vid, pair) for vid, pair in wanted.items() if vid not in held]
    return ops


def wanted_from(final: Sequence[FinalValue]) -> tuple[dict[int, Pair], frozenset[int]]:
    """A merged field as :func:`child_ops` takes it: values by ID, and the kept ERP rows."""
    wanted = {v.value_id: v.pair for v in final if v.value_id is not None}
    keep = frozenset(v.row_id for v in final if v.value_id is None and v.row_id is not None)
    return wanted, keep
