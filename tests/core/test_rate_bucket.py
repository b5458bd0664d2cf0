"""The client's mirror of the portal's leaky bucket, and per-method operating time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.operating_budget import OperatingBudget
from connector.core.portal_answers import OperatingTime
from connector.core.rate_bucket import (
    ENTERPRISE,
    STANDARD,
    BucketProfile,
    BucketState,
    level_at,
    penalize,
    profile_for,
    reserve,
)


def test_profiles_match_the_portal_plans() -> None:
    """Standard is 2/s burst 50, Enterprise 5/s burst 250; overrides win."""
    assert (STANDARD.rate, STANDARD.burst) == (2.0, 50)
    assert (ENTERPRISE.rate, ENTERPRISE.burst) == (5.0, 250)
    assert profile_for("Enterprise") == ENTERPRISE
    assert profile_for(None) == STANDARD
    custom = profile_for("enterprise", rate=7.0, burst=300)
    assert (custom.rate, custom.burst) == (7.0, 300)


def test_cap_keeps_headroom() -> None:
    """The client stops below the portal's threshold, and never below 1."""
    assert STANDARD.cap == 40.0
    assert BucketProfile(rate=1, burst=1).cap == 1.0
    with pytest.raises(ValueError):
        BucketProfile(rate=0)
    with pytest.raises(ValueError):
        BucketProfile(headroom=1.0)


def test_burst_goes_through_then_requests_are_spaced() -> None:
    """Up to the cap no waiting; after it, each request waits one more 1/rate."""
    state = BucketState(updated_at=0.0)
    waits = []
    for _ in range(43):
        state, wait = reserve(state, 0.0, STANDARD)
        waits.append(wait)

    assert waits[:40] == [0.0] * 40
    assert waits[40:] == [0.5, 1.0, 1.5]


def test_level_drains_with_time() -> None:
    """The level falls by rate per second and stops at zero."""
    state = BucketState(level=10.0, updated_at=100.0)

    assert level_at(state, 102.0, STANDARD) == 6.0
    assert level_at(state, 200.0, STANDARD) == 0.0
    assert level_at(state, 50.0, STANDARD) == 10.0  # a clock behind us drains nothing


def test_penalize_fills_bucket_and_slows_down() -> None:
    """After a limit answer the bucket counts as full and rate and cap drop for a while."""
    state = penalize(BucketState(updated_at=0.0), 0.0, STANDARD)

    assert state.level == 50.0
    assert STANDARD.slowdown_s == state.slowdown_until
    _, wait = reserve(state, 0.0, STANDARD)
    slow_rate, slow_cap = STANDARD.effective(True)
    assert (slow_rate, slow_cap) == (1.0, 20.0)
    assert wait == (51 - 20) / 1.0
    _, later = reserve(state, STANDARD.slowdown_s + 1000, STANDARD)
    assert later == 0.0


def test_repeated_penalties_do_not_shorten_the_slowdown() -> None:
    """A second limit answer extends the slow-down, never cuts it short."""
    first = penalize(BucketState(), 100.0, STANDARD)
    second = penalize(first, 90.0, STANDARD)

    assert first.slowdown_until == second.slowdown_until


@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=300),
    rate=st.sampled_from([2.0, 5.0, 50.0]),
    burst=st.sampled_from([10, 50, 250]),
)
def test_sending_at_the_booked_time_never_overflows_the_portal(
    gaps: list[float], rate: float, burst: int
) -> None:
    """Simulate the portal's bucket: requests sent when reserve() says never pass burst."""
    profile = BucketProfile(rate=rate, burst=burst)
    state = BucketState()
    now = 0.0
    sends: list[float] = []
    for gap in gaps:
        now += gap
        state, wait = reserve(state, now, profile)
        sends.append(now + wait)
    portal_level = 0.0
    last = 0.0
    for sent in sorted(sends):
        portal_level = max(0.0, portal_level - (sent - last) * rate) + 1
        last = sent
        assert portal_level <= profile.cap + 1e-6


def test_operating_budget_pauses_near_the_limit() -> None:
    """A method that spent 90% of its budget rests until its reset time."""
    budget = OperatingBudget(limit_s=480.0)
    budget.observe("crm.deal.list", OperatingTime(100.0, 1_000.0), now=500.0)
    assert budget.wait_for("crm.deal.list", 500.0) == 0.0
    assert budget.known_reset_at("crm.deal.list") == 1_000.0

    budget.observe("crm.deal.list", OperatingTime(440.0, 1_000.0), now=500.0)

    assert budget.wait_for("crm.deal.list", 500.0) == 500.0
    assert budget.wait_for("batch", 500.0) == 0.0
    assert budget.wait_for("crm.deal.list", 1_000.0) == 0.0


def test_operating_budget_pause_is_per_method_and_latest_wins() -> None:
    """pause() keeps the later deadline; unknown figures change nothing."""
    budget = OperatingBudget()
    budget.pause("batch", 50.0)
    budget.pause("batch", 40.0)
    budget.observe("batch", OperatingTime(), now=0.0)

    assert budget.wait_for("batch", 0.0) == 50.0
    assert budget.known_reset_at("batch") is None


def test_operating_budget_without_reset_time_uses_default() -> None:
    """Near the limit with no reset time known, the method rests one basket."""
    budget = OperatingBudget(limit_s=10.0)
    budget.observe("x", OperatingTime(10.0, None), now=0.0)

    assert budget.wait_for("x", 0.0) == 60.0
