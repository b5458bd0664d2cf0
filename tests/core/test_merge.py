"""The three-way merge: disjoint edits merge, same-field edits follow the field's policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.mapping_model import ConflictPolicy, Direction
from connector.core.merge import FieldRule, Move, Sides, decide, merge_record

BOTH = FieldRule()


@pytest.mark.parametrize(
    ("sides", "move"),
    [
        (Sides("a", "a", "a"), Move.NONE),
        (Sides("a", "b", "a"), Move.TO_ERP),
        (Sides("a", "a", "b"), Move.TO_PORTAL),
        (Sides("a", "b", "b"), Move.NONE),
        (Sides("a", "b", "c"), Move.CONFLICT),
        (Sides(None, "b", "c", has_base=False), Move.CONFLICT),
        (Sides(None, "b", None, has_base=False), Move.TO_ERP),
        (Sides(None, None, "c", has_base=False), Move.TO_PORTAL),
    ],
)
def test_moves_for_a_two_way_manual_field(sides: Sides, move: Move) -> None:
    """Who moved away from the base decides; both moving apart is a conflict; with no base
    an empty side takes the other's value and two different values are a conflict."""
    assert decide(BOTH, sides) == move


@pytest.mark.parametrize(
    ("policy", "move"),
    [
        (ConflictPolicy.MANUAL, Move.CONFLICT),
        (ConflictPolicy.PORTAL_WINS, Move.TO_ERP),
        (ConflictPolicy.ERP_WINS, Move.TO_PORTAL),
    ],
)
def test_conflict_policy_settles_same_field_edits(policy: ConflictPolicy, move: Move) -> None:
    """portal_wins / erp_wins settle a both-sides edit; manual leaves it to the operator."""
    assert decide(FieldRule(conflict=policy), Sides("a", "b", "c")) == move


def test_newer_wins_uses_modification_times() -> None:
    """newer_wins takes the side modified last; without both times it stays manual."""
    rule = FieldRule(conflict=ConflictPolicy.NEWER_WINS)
    assert decide(rule, Sides("a", "b", "c"), portal_newer=True) == Move.TO_ERP
    assert decide(rule, Sides("a", "b", "c"), portal_newer=False) == Move.TO_PORTAL
    assert decide(rule, Sides("a", "b", "c")) == Move.CONFLICT


def test_direction_limits_which_way_a_value_moves() -> None:
    """A to_erp field never pushes to the portal; a to_portal field never takes the portal's."""
    to_erp = FieldRule(direction=Direction.TO_ERP)
    to_portal = FieldRule(direction=Direction.TO_PORTAL)
    assert decide(to_erp, Sides("a", "a", "x")) == Move.TO_ERP  # ERP edit is overwritten
    assert decide(to_erp, Sides("a", "b", "c")) == Move.TO_ERP
    assert decide(to_portal, Sides("a", "b", "a")) == Move.TO_PORTAL  # portal edit undone
    assert decide(to_portal, Sides("a", "b", "c")) == Move.TO_PORTAL


def test_disjoint_edits_merge_and_same_field_edits_conflict() -> None:
    """Portal edits TITLE, ERP edits COMMENTS: both move; both edit PHONE: a conflict."""
    rules = {"TITLE": BOTH, "COMMENTS": BOTH, "PHONE": BOTH}
    base = {"TITLE": "Acme", "COMMENTS": "old", "PHONE": "1"}
    portal = {"TITLE": "Acme Ltd", "COMMENTS": "old", "PHONE": "2"}
    erp = {"TITLE": "Acme", "COMMENTS": "new", "PHONE": "3"}
    result = merge_record(rules, base, portal, erp)
    assert result.to_erp == {"TITLE": "Acme Ltd"}
    assert result.to_portal == {"COMMENTS": "new"}
    assert set(result.conflicts) == {"PHONE"}
    assert result.agreed == {"TITLE": "Acme Ltd", "COMMENTS": "new"}


def test_a_new_record_takes_every_portal_field() -> None:
    """No ERP row yet: every field that may reach the ERP is applied."""
    rules = {"TITLE": BOTH, "CODE": FieldRule(direction=Direction.TO_PORTAL)}
    result = merge_record(rules, None, {"TITLE": "X", "CODE": "c"}, None)
    assert result.to_erp == {"TITLE": "X"}


def test_newer_wins_through_merge_record() -> None:
    """merge_record passes the modification times to newer_wins fields."""
    rules = {"T": FieldRule(conflict=ConflictPolicy.NEWER_WINS)}
    early, late = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    got = merge_record(
        rules, {"T": "a"}, {"T": "p"}, {"T": "e"}, portal_modified=late, erp_modified=early
    )
    assert got.to_erp == {"T": "p"}


def test_newer_wins_within_the_skew_tolerance_is_a_conflict() -> None:
    """Two edits closer than the clock skew cannot be ordered: the operator decides."""
    rules = {"T": FieldRule(conflict=ConflictPolicy.NEWER_WINS)}
    at = datetime(2024, 1, 1, tzinfo=UTC)
    close = merge_record(
        rules,
        {"T": "a"},
        {"T": "p"},
        {"T": "e"},
        portal_modified=at,
        erp_modified=at + timedelta(seconds=2),
        skew=timedelta(seconds=5),
    )
    assert set(close.conflicts) == {"T"}


values = st.sampled_from(["a", "b", "c", None])


@given(values, values, values)
def test_merge_never_loses_a_side_silently(base: object, portal: object, erp: object) -> None:
    """For a manual two-way field, every outcome keeps one side's value or is a conflict,
    and a value that changed on only one side always wins."""
    result = merge_record({"F": BOTH}, {"F": base}, {"F": portal}, {"F": erp})
    final = result.to_erp.get("F", result.to_portal.get("F", erp))
    if "F" in result.conflicts:
        assert portal != erp and portal != base and erp != base
    else:
        assert final in (portal, erp)
        if portal != base and erp == base:
            assert final == portal
        if erp != base and portal == base:
            assert final == erp


def test_an_accepted_disagreement_holds_until_one_side_moves() -> None:
    """A Split base (a conflict ignored by an operator): the two values stay as they are;
    when the portal moves, its value syncs; once both agree the split is gone."""
    from connector.core.merge import Split

    base = {"T": Split("p", "e")}
    still = merge_record({"T": BOTH}, base, {"T": "p"}, {"T": "e"})
    assert (still.to_erp, still.to_portal, still.conflicts) == ({}, {}, {})
    assert still.split == {"T": Split("p", "e")}
    moved = merge_record({"T": BOTH}, base, {"T": "p2"}, {"T": "e"})
    assert moved.to_erp == {"T": "p2"} and moved.split == {}
    both = merge_record({"T": BOTH}, base, {"T": "p2"}, {"T": "e2"})
    assert set(both.conflicts) == {"T"}
