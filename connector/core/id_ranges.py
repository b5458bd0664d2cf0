"""ID ranges read side by side: the split, and how far the load is safely done.

A backfill that reads one ID-window chain pays the portal's latency once per request;
with ``parts`` ranges read concurrently, that many requests are in flight and the rate
bucket, not the latency, sets the pace. Windows then commit out of ID order, so the
resumable cursor is the **contiguous prefix**: every ID up to it is loaded. A restart
goes on from there and re-reads (idempotently) whatever later ranges had loaded already.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["IdRange", "RangeProgress", "split_ranges"]


@dataclass(frozen=True)
class IdRange:
    """The IDs ``lo < ID <= hi``."""

    lo: int
    hi: int


def split_ranges(after: int, top: int, parts: int, min_span: int) -> list[IdRange]:
    """``(after, top]`` in at most ``parts`` equal ranges, none narrower than ``min_span``."""
    span = top - after
    if span <= 0:
        return [IdRange(after, max(after, top))]
    count = max(1, min(parts, span // max(1, min_span)))
    bounds = [after + span * n // count for n in range(count + 1)]
    return [IdRange(lo, hi) for lo, hi in itertools.pairwise(bounds)]


class RangeProgress:
    """Which ranges are done and how far each got; the prefix the cursor may record."""

    def __init__(self, ranges: list[IdRange]) -> None:
        self.ranges = ranges
        self.last = [r.lo for r in ranges]
        self.done = [False] * len(ranges)

    def applied(self, index: int, last_id: int) -> None:
        self.last[index] = max(self.last[index], last_id)

    def finished(self, index: int) -> None:
        self.done[index] = True

    def prefix(self) -> int:
        """The highest ID such that every ID up to it is loaded."""
        for _rng, last, done in zip(self.ranges, self.last, self.done, strict=True):
            if not done:
                return last
        return self.ranges[-1].hi
