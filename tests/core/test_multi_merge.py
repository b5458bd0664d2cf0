"""Multi-fields changed on both sides, merged value by value (pure)."""

from __future__ import annotations

from connector.core.multi_merge import ErpValue, FinalValue, child_ops, merge_values, pairs_of

W = "WORK"


def test_disjoint_value_edits_merge() -> None:
    """Portal changes value 1, the ERP deletes value 2 and adds a new one: all three kept."""
    base = [(W, "100"), (W, "200")]
    portal = {1: (W, "111"), 2: (W, "200")}
    erp = [ErpValue(10, 1, (W, "100")), ErpValue(12, None, ("MOBILE", "300"))]
    final = merge_values(base, portal, erp)
    assert final == [FinalValue(1, 10, (W, "111")), FinalValue(None, 12, ("MOBILE", "300"))]
    assert pairs_of(final) == (("MOBILE", "300"), (W, "111"))


def test_the_portal_deleting_a_value_the_erp_kept_removes_it() -> None:
    """A value in the base that the portal dropped goes; an ERP change to another stays."""
    base = [(W, "100"), (W, "200")]
    portal = {1: (W, "100")}
    erp = [ErpValue(10, 1, (W, "101")), ErpValue(11, 2, (W, "200"))]
    assert merge_values(base, portal, erp) == [FinalValue(1, 10, (W, "101"))]


def test_the_same_value_changed_on_both_sides_is_a_conflict() -> None:
    assert merge_values([(W, "1")], {1: (W, "P")}, [ErpValue(10, 1, (W, "E"))]) is None


def test_child_ops_follow_the_wanted_values_and_keep_erp_additions() -> None:
    """By value ID: change, add, delete; rows in keep are left alone; a duplicate ID goes."""
    rows = [
        ErpValue(1, 10, (W, "a")),
        ErpValue(2, 11, (W, "b")),
        ErpValue(3, None, (W, "new")),
        ErpValue(4, 10, (W, "dup")),
        ErpValue(5, None, (W, "stale")),
    ]
    ops = child_ops(rows, {10: (W, "a2"), 12: (W, "c")}, frozenset({3}))
    assert ops.changed == [(1, (W, "a2"))]
    assert sorted(ops.gone) == [2, 4, 5]
    assert ops.added == [(12, (W, "c"))]
