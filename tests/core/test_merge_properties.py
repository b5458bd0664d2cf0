"""Property tests of the pure three-way merge: whole records, several fields, random rules.

Values are already canonical: small strings with ``None`` as the empty scalar, and
multi-field tuples of ``(type, value)`` pairs with ``()`` as the empty multi-field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.core.mapping_model import ConflictPolicy, Direction
from connector.core.merge import FieldRule, MergeResult, Sides, merge_record

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCALARS: tuple[Any, ...] = ("a", "b", "c", None)
MULTIS: tuple[Any, ...] = (
    (),
    (("PHONE", "1"),),
    (("EMAIL", "x@y"),),
    (("EMAIL", "x@y"), ("PHONE", "1")),
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)

SWAP_DIRECTION = {
    Direction.BOTH: Direction.BOTH,
    Direction.TO_ERP: Direction.TO_PORTAL,
    Direction.TO_PORTAL: Direction.TO_ERP,
}
SWAP_POLICY = {
    ConflictPolicy.MANUAL: ConflictPolicy.MANUAL,
    ConflictPolicy.PORTAL_WINS: ConflictPolicy.ERP_WINS,
    ConflictPolicy.ERP_WINS: ConflictPolicy.PORTAL_WINS,
    ConflictPolicy.NEWER_WINS: ConflictPolicy.NEWER_WINS,
}

rules = st.builds(
    FieldRule, st.sampled_from(list(Direction)), st.sampled_from(list(ConflictPolicy))
)
moments = st.sampled_from([None, 0, 1, 2, 5, 10]).map(
    lambda s: None if s is None else T0 + timedelta(seconds=s)
)
skews = st.sampled_from([0, 1, 2, 5]).map(lambda s: timedelta(seconds=s))

# (draw, pool of values, has_base) -> (base, portal, erp) for one field
Values = Callable[[st.DrawFn, tuple[Any, ...], bool], tuple[Any, Any, Any]]


def _empty(value: Any) -> bool:
    return value is None or value == ()


def any_values(draw: st.DrawFn, pool: tuple[Any, ...], has_base: bool) -> tuple[Any, Any, Any]:
    one = st.sampled_from(pool)
    return draw(one) if has_base else None, draw(one), draw(one)


def disjoint_values(draw: st.DrawFn, pool: tuple[Any, ...], has_base: bool) -> tuple[Any, Any, Any]:
    """At most one side differs from the base."""
    base, other = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
    mover = draw(st.sampled_from(["nobody", "portal", "erp"]))
    return (
        base,
        other if mover == "portal" else base,
        other if mover == "erp" else base,
    )


def both_moved_values(
    draw: st.DrawFn, pool: tuple[Any, ...], has_base: bool
) -> tuple[Any, Any, Any]:
    """Both sides hold different values, each away from the base (non-empty, with no base)."""
    if has_base:
        base, portal, erp = draw(st.permutations(pool))[:3]
        return base, portal, erp
    portal, erp = draw(st.permutations([v for v in pool if not _empty(v)]))[:2]
    return None, portal, erp


@dataclass(frozen=True)
class Case:
    rules: dict[str, FieldRule]
    base: dict[str, Any] | None
    portal: dict[str, Any]
    erp: dict[str, Any] | None
    portal_modified: datetime | None = None
    erp_modified: datetime | None = None
    skew: timedelta = timedelta(0)

    def merge(self) -> MergeResult:
        return merge_record(
            self.rules,
            self.base,
            self.portal,
            self.erp,
            portal_modified=self.portal_modified,
            erp_modified=self.erp_modified,
            skew=self.skew,
        )

    def sides(self, name: str) -> Sides:
        has_base = self.base is not None and name in self.base
        base = self.base[name] if self.base is not None and has_base else None
        erp = self.erp.get(name) if self.erp is not None else None
        return Sides(base, self.portal[name], erp, has_base)

    def portal_newer(self) -> bool | None:
        """Which side is newer, when both times are known and further apart than the skew."""
        if self.portal_modified is None or self.erp_modified is None:
            return None
        gap = self.portal_modified - self.erp_modified
        return None if abs(gap) <= self.skew else gap > timedelta(0)


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    values: Values = any_values,
    rule: st.SearchStrategy[FieldRule] = rules,
    bases: str = "some",  # per field at random; "all"; "none" (no dict, or one lacking all)
    full_portal: bool = False,
    erp_row: bool | None = True,  # None: at random
) -> Case:
    count = draw(st.integers(1, 5))
    no_base_dict = bases == "none" and draw(st.booleans())
    case_rules: dict[str, FieldRule] = {}
    base: dict[str, Any] = {}
    portal: dict[str, Any] = {}
    erp: dict[str, Any] = {}
    for i in range(count):
        name = f"F{i}"
        pool = draw(st.sampled_from([SCALARS, MULTIS]))
        has_base = bases == "all" or (bases == "some" and draw(st.booleans()))
        b, p, e = values(draw, pool, has_base)
        case_rules[name] = draw(rule)
        if has_base:
            base[name] = b
        if full_portal or draw(st.integers(0, 5)) > 0:  # sometimes not reported
            portal[name] = p
        erp[name] = e
    with_erp = draw(st.booleans()) if erp_row is None else erp_row
    return Case(
        case_rules,
        None if no_base_dict else base,
        portal,
        erp if with_erp else None,
        draw(moments),
        draw(moments),
        draw(skews),
    )


def apply(case: Case, result: MergeResult) -> Case:
    """Both sides take their writes; the base records what both sides now agree on."""
    return replace(
        case,
        base={**(case.base or {}), **result.agreed},
        portal={**case.portal, **result.to_portal},
        erp={**(case.erp or {}), **result.to_erp},
    )


@PROPERTY
@given(cases())
def test_merging_an_applied_result_again_is_a_no_op(case: Case) -> None:
    """Idempotence: once both sides took their writes and the base took the agreed values,
    a second merge moves nothing, and the conflicts stay exactly the same conflicts.

    The ERP row exists: after a new-row merge (``erp=None``) a reported ``to_portal``
    field is absent from the new row, so the next merge pushes its empty ERP value."""
    first = case.merge()
    second = apply(case, first).merge()
    assert second.to_erp == {}
    assert second.to_portal == {}
    assert second.conflicts == first.conflicts


@PROPERTY
@given(cases(full_portal=True))
def test_swapping_portal_and_erp_swaps_the_writes(case: Case) -> None:
    """Symmetry: swapping the portal and ERP values (with the directions, the winning
    policies and the modification times) swaps to_erp and to_portal, same conflicts."""
    assert case.erp is not None
    mirror = Case(
        {
            n: FieldRule(SWAP_DIRECTION[r.direction], SWAP_POLICY[r.conflict])
            for n, r in case.rules.items()
        },
        case.base,
        dict(case.erp),
        dict(case.portal),
        case.erp_modified,
        case.portal_modified,
        case.skew,
    )
    result, mirrored = case.merge(), mirror.merge()
    assert mirrored.to_erp == result.to_portal
    assert mirrored.to_portal == result.to_erp
    assert mirrored.agreed == result.agreed
    assert mirrored.conflicts == {
        n: Sides(s.base, s.erp, s.portal, s.has_base) for n, s in result.conflicts.items()
    }


@PROPERTY
@given(cases())
def test_a_changed_value_is_only_overwritten_when_a_rule_says_so(case: Case) -> None:
    """No silent loss: a side's value is overwritten only by the other side's value, and
    only if the direction makes the field the other side's, or the other side moved and this
    side did not (or the policy picks the other side). A manual two-way field both sides
    moved apart is a conflict; a field only one side moved takes that side's value."""
    result = case.merge()
    newer = case.portal_newer()
    for name, rule in case.rules.items():
        if name not in case.portal:
            assert name not in result.to_erp
            assert name not in result.to_portal
            assert name not in result.conflicts
            continue
        s = case.sides(name)
        p_moved = s.portal != s.base if s.has_base else not _empty(s.portal)
        e_moved = s.erp != s.base if s.has_base else not _empty(s.erp)
        outcomes = [name in result.to_erp, name in result.to_portal, name in result.conflicts]
        assert sum(outcomes) <= 1
        if name in result.to_erp:
            assert result.to_erp[name] == s.portal != s.erp
            assert rule.direction is not Direction.TO_PORTAL
            portal_picked = rule.conflict is ConflictPolicy.PORTAL_WINS or (
                rule.conflict is ConflictPolicy.NEWER_WINS and newer is True
            )
            assert rule.direction is Direction.TO_ERP or (
                p_moved and (not e_moved or portal_picked)
            )
        if name in result.to_portal:
            assert result.to_portal[name] == s.erp != s.portal
            assert rule.direction is not Direction.TO_ERP
            erp_picked = rule.conflict is ConflictPolicy.ERP_WINS or (
                rule.conflict is ConflictPolicy.NEWER_WINS and newer is False
            )
            assert rule.direction is Direction.TO_PORTAL or (
                e_moved and (not p_moved or erp_picked)
            )
        assert any(outcomes) == (s.portal != s.erp)  # sides never left apart silently
        if not s.has_base or s.portal == s.erp:
            continue
        two_way_manual = rule == FieldRule(Direction.BOTH, ConflictPolicy.MANUAL)
        if two_way_manual and p_moved and e_moved:
            assert name in result.conflicts
        if p_moved and not e_moved and rule.direction is not Direction.TO_PORTAL:
            assert result.to_erp.get(name, "<kept>") == s.portal
        if e_moved and not p_moved and rule.direction is not Direction.TO_ERP:
            assert result.to_portal.get(name, "<kept>") == s.erp


@PROPERTY
@given(cases(values=disjoint_values, bases="all"))
def test_disjoint_edits_never_conflict(case: Case) -> None:
    """If for every field at most one side moved from the base, nothing is a conflict and
    every reported field ends agreed."""
    result = case.merge()
    assert result.conflicts == {}
    assert set(result.agreed) == set(case.portal)


@PROPERTY
@given(cases(bases="none"))
def test_with_no_base_an_empty_side_takes_the_other_value(case: Case) -> None:
    """No base (never synced), ERP row present: an empty side takes the other's value, two
    different non-empty values are settled by the policy (manual: a conflict, never a
    silent portal win); a one-way field always takes its owner's value."""
    result = case.merge()
    newer = case.portal_newer()
    for name in case.portal:
        rule, s = case.rules[name], case.sides(name)
        if s.portal == s.erp:
            assert name in result.agreed
            continue
        if rule.direction is not Direction.BOTH:  # the owner's value, whatever it is
            winner = "portal" if rule.direction is Direction.TO_ERP else "erp"
        elif _empty(s.portal) or _empty(s.erp):  # the empty side takes the other's
            winner = "erp" if _empty(s.portal) else "portal"
        elif rule.conflict is ConflictPolicy.PORTAL_WINS or (
            rule.conflict is ConflictPolicy.NEWER_WINS and newer is True
        ):
            winner = "portal"
        elif rule.conflict is ConflictPolicy.ERP_WINS or (
            rule.conflict is ConflictPolicy.NEWER_WINS and newer is False
        ):
            winner = "erp"
        else:
            winner = None
        if winner == "portal":
            assert result.to_erp.get(name, "<kept>") == s.portal
        elif winner == "erp":
            assert result.to_portal.get(name, "<kept>") == s.erp
        else:
            assert result.conflicts.get(name) == s


@PROPERTY
@given(
    cases(
        values=both_moved_values,
        rule=st.just(FieldRule(conflict=ConflictPolicy.NEWER_WINS)),
        full_portal=True,
    )
)
def test_newer_wins_takes_the_side_modified_last_outside_the_skew(case: Case) -> None:
    """newer_wins on a both-sides edit: with both times known and further apart than the
    skew the newer side's value wins; within the skew (or a time unknown) it is a conflict."""
    result = case.merge()
    pm, em = case.portal_modified, case.erp_modified
    for name in case.rules:
        s = case.sides(name)
        if pm is not None and em is not None and abs(pm - em) > case.skew:
            if pm > em:
                assert result.to_erp.get(name, "<kept>") == s.portal
            else:
                assert result.to_portal.get(name, "<kept>") == s.erp
        else:
            assert result.conflicts.get(name) == s


@PROPERTY
@given(cases(erp_row=False))
def test_a_new_erp_row_takes_every_field_that_reaches_the_erp(case: Case) -> None:
    """No ERP row yet: every reported field that may reach the ERP is written to it, nothing
    goes to the portal and nothing is a conflict (the ERP has nothing to lose)."""
    result = case.merge()
    reach = {n for n, r in case.rules.items() if r.direction is not Direction.TO_PORTAL}
    assert result.to_erp == {n: v for n, v in case.portal.items() if n in reach}
    assert result.to_portal == {}
    assert result.conflicts == {}
