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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from connector.core.mapping_model import ConflictPolicy, Direction


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

    @property
    def has_conflict(self) -> bool:
        return bool(self.conflicts)


def decide(rule: FieldRule, sides: Sides, *, portal_newer: bool | None = None) -> Move:
    """The move for one field."""
    portal_allowed = rule.direction in (Direction.BOTH, Direction.TO_ERP)
    erp_allowed = rule.direction in (Direction.BOTH, Direction.TO_PORTAL)
    if sides.portal == sides.erp:
        return Move.NONE
    base = sides.base if sides.has_base else sides.erp
    portal_moved = sides.portal != base
    erp_moved = sides.erp != base if sides.has_base else False
    if not sides.has_base and rule.direction is Direction.TO_PORTAL:
        return Move.TO_PORTAL
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
) -> MergeResult:
    """Merge every field of ``rules``. ``erp`` None: the ERP has no row yet (take the portal).

    ``portal`` lacking a field means the portal did not report it: it is left alone.
    """
    result = MergeResult()
    newer: bool | None = None
    if portal_modified is not None and erp_modified is not None:
        newer = portal_modified >= erp_modified
    for name, rule in rules.items():
        if name not in portal:
            continue
        p = portal[name]
        if erp is None:
            if rule.direction is not Direction.TO_PORTAL:
                result.to_erp[name] = p
                result.agreed[name] = p
            continue
        e = erp.get(name)
        has_base = base is not None and name in base
        sides = Sides(base.get(name) if base else None, p, e, has_base)
        move = decide(rule, sides, portal_newer=newer)
        if move is Move.NONE:  # only when both sides already hold the same value
            result.agreed[name] = p
        elif move is Move.TO_ERP:
            result.to_erp[name] = p
            result.agreed[name] = p
        elif move is Move.TO_PORTAL:
            result.to_portal[name] = e
            result.agreed[name] = e
        else:
            result.conflicts[name] = sides
    return result
