"""The three-way field merge: base (last agreed) / portal / ERP → what to do per field.

Values are compared in canonical form (:func:`connector.core.field_values.canonical`), so
``""`` equals ``None`` and ``1500.5`` equals ``"1500.50"``. Per field:

* both sides equal                     → nothing to do (the base catches up);
* only the portal moved from the base  → apply the portal value to the ERP;
* only the ERP moved from the base     → push the ERP value to the portal;
* both moved to different values       → the field's conflict policy decides; ``manual``
  makes it a conflict for an operator.

A field whose direction forbids a move never moves that way: a ``to_portal`` field's
portal change is ignored, a ``to_erp`` field's ERP change is overwritten by the portal.

With no base (a field newly mapped, a row the ERP linked by itself) nobody knows who
moved: an empty side takes the other's value, and two different values are settled by the
policy like a both-sides edit — ``manual`` makes it a conflict, never a silent portal win.

``newer_wins`` compares the two sides' modification times; times closer than the skew
tolerance cannot be told apart, and the field becomes a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from connector.core.mapping_model import ConflictPolicy, Direction
from connector.core.multi_merge import ErpValue, FinalValue, Pair, merge_values, pairs_of


class Move(StrEnum):
    NONE = "none"
    TO_ERP = "to_erp"
    TO_PORTAL = "to_portal"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class FieldRule:
    direction: Direction = Direction.BOTH
    conflict: ConflictPolicy = ConflictPolicy.MANUAL


@dataclass(frozen=True)
class Split:
    """A base that is a disagreement both sides accept (an operator ignored a conflict):
    each side's value as it was. Neither side has moved while it still holds its value;
    when one side moves, the field syncs as usual, and once they agree the split is gone."""

    portal: Any
    erp: Any


@dataclass(frozen=True)
class Sides:
    """One field's three values, already canonical. ``has_base`` False: never synced."""

    base: Any
    portal: Any
    erp: Any
    has_base: bool = True


@dataclass
class MergeResult:
    """The decision for one record."""

    to_erp: dict[str, Any] = field(default_factory=dict)
    to_portal: dict[str, Any] = field(default_factory=dict)
    conflicts: dict[str, Sides] = field(default_factory=dict)
    agreed: dict[str, Any] = field(default_factory=dict)  # field → value both sides now hold
    split: dict[str, Split] = field(default_factory=dict)  # accepted disagreements kept
    multi: dict[str, list[FinalValue]] = field(default_factory=dict)  # merged per value ID

    @property
    def has_conflict(self) -> bool:
        return bool(self.conflicts)


def _empty(value: Any) -> bool:
    return value is None or value == () or value is False


def decide(rule: FieldRule, sides: Sides, *, portal_newer: bool | None = None) -> Move:
    """The move for one field."""
    portal_allowed = rule.direction in (Direction.BOTH, Direction.TO_ERP)
    erp_allowed = rule.direction in (Direction.BOTH, Direction.TO_PORTAL)
    if sides.portal == sides.erp:
        return Move.NONE
    if isinstance(sides.base, Split):
        portal_moved = sides.portal != sides.base.portal
        erp_moved = sides.erp != sides.base.erp
        if not portal_moved and not erp_moved:
            return Move.NONE  # the disagreement an operator accepted still stands
    elif sides.has_base:
        portal_moved = sides.portal != sides.base
        erp_moved = sides.erp != sides.base
    else:  # unknown history: an empty side has nothing to lose, two values both "moved"
        portal_moved = not _empty(sides.portal) or _empty(sides.erp)
        erp_moved = not _empty(sides.erp)
    if portal_moved and not erp_moved:
        return Move.TO_ERP if portal_allowed else (Move.TO_PORTAL if erp_allowed else Move.NONE)
    if erp_moved and not portal_moved:
        return Move.TO_PORTAL if erp_allowed else (Move.TO_ERP if portal_allowed else Move.NONE)
    # both moved, to different values
    if not erp_allowed:
        return Move.TO_ERP
    if not portal_allowed:
        return Move.TO_PORTAL
    if rule.conflict is ConflictPolicy.PORTAL_WINS:
        return Move.TO_ERP
    if rule.conflict is ConflictPolicy.ERP_WINS:
        return Move.TO_PORTAL
    if rule.conflict is ConflictPolicy.NEWER_WINS and portal_newer is not None:
        return Move.TO_ERP if portal_newer else Move.TO_PORTAL
    return Move.CONFLICT


def merge_record(
    rules: Mapping[str, FieldRule],
    base: Mapping[str, Any] | None,
    portal: Mapping[str, Any],
    erp: Mapping[str, Any] | None,
    *,
    portal_modified: datetime | None = None,
    erp_modified: datetime | None = None,
    skew: timedelta = timedelta(0),
    multi: Mapping[str, tuple[Mapping[int, Pair], Sequence[ErpValue]]] | None = None,
) -> MergeResult:
    """Merge every field of ``rules``. ``erp`` None: the ERP has no row yet (take the portal).

    ``portal`` lacking a field means the portal did not report it: it is left alone.
    ``newer_wins`` fields use the modification times, when both are known and further
    apart than ``skew``. ``multi`` gives, per multi-field, the portal's values by ID and
    the ERP's rows: a multi-field both sides changed is then merged value by value
    (:mod:`connector.core.multi_merge`) and is a conflict only when one value changed on
    both sides; the merged values are in ``result.multi``.
    """
    if erp is None:  # no ERP row yet: every reported field the portal may write goes over
        taken = {
            name: portal[name]
            for name, rule in rules.items()
            if name in portal and rule.direction is not Direction.TO_PORTAL
        }
        return MergeResult(to_erp=taken, agreed=dict(taken))
    result = MergeResult()
    newer: bool | None = None
    if (
        portal_modified is not None
        and erp_modified is not None
        and abs(portal_modified - erp_modified) > skew
    ):
        newer = portal_modified > erp_modified
    for name, rule in rules.items():
        if name not in portal:
            continue
        p = portal[name]
        e = erp.get(name)
        has_base = base is not None and name in base
        sides = Sides(base.get(name) if base else None, p, e, has_base)
        move = decide(rule, sides, portal_newer=newer)
        if move is Move.NONE and isinstance(sides.base, Split) and p != e:
            result.split[name] = sides.base
        elif move is Move.NONE:  # both sides hold the same value
            result.agreed[name] = p
        elif move is Move.TO_ERP:
            result.to_erp[name] = p
            result.agreed[name] = p
        elif move is Move.TO_PORTAL:
            result.to_portal[name] = e
            result.agreed[name] = e
        elif multi and name in multi and isinstance(sides.base, tuple) and sides.has_base:
            portal_values, erp_rows = multi[name]
            final = merge_values(sides.base, portal_values, erp_rows)
            if final is None:  # the same value changed on both sides
                result.conflicts[name] = sides
                continue
            merged = pairs_of(final)
            result.multi[name] = final
            if merged != e:  # the ERP lacks the portal's part
                result.to_erp[name] = merged
            if merged != p:  # the portal lacks the ERP's part
                result.to_portal[name] = merged
            result.agreed[name] = merged
        else:
            result.conflicts[name] = sides
    return result
