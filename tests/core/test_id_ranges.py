"""Splitting the ID space for concurrent reads, and the cursor's safe prefix."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.id_ranges import IdRange, RangeProgress, split_ranges


def test_a_large_span_splits_in_equal_contiguous_ranges() -> None:
    assert split_ranges(0, 10_000, 4, 2_500) == [
        IdRange(0, 2_500),
        IdRange(2_500, 5_000),
        IdRange(5_000, 7_500),
        IdRange(7_500, 10_000),
    ]


def test_a_small_span_stays_one_range() -> None:
    assert split_ranges(100, 2_000, 4, 2_500) == [IdRange(100, 2_000)]
    assert split_ranges(5, 5, 4, 10) == [IdRange(5, 5)]
    assert split_ranges(0, 6_000, 4, 2_500) == [IdRange(0, 3_000), IdRange(3_000, 6_000)]


@settings(max_examples=200, deadline=None)
@given(
    after=st.integers(0, 10**6),
    span=st.integers(0, 10**6),
    parts=st.integers(1, 8),
    min_span=st.integers(1, 5_000),
)
def test_ranges_cover_the_span_exactly_once(
    after: int, span: int, parts: int, min_span: int
) -> None:
    ranges = split_ranges(after, after + span, parts, min_span)
    assert ranges[0].lo == after and ranges[-1].hi == after + span
    assert all(a.hi == b.lo for a, b in itertools.pairwise(ranges))
    assert len(ranges) <= parts


def test_the_prefix_waits_for_the_earliest_unfinished_range() -> None:
    progress = RangeProgress(split_ranges(0, 400, 4, 100))
    assert progress.prefix() == 0
    progress.applied(2, 250)  # a later range went first: the cursor may not move
    progress.applied(0, 60)
    assert progress.prefix() == 60
    progress.finished(0)
    assert progress.prefix() == 100  # range 1 has loaded nothing yet
    progress.applied(1, 180)
    progress.finished(1)
    assert progress.prefix() == 250  # range 2 got to 250 meanwhile
    progress.finished(2)
    progress.finished(3)
    assert progress.prefix() == 400
