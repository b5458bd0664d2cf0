"""Capping glibc malloc's per-thread arenas, as ``MALLOC_ARENA_MAX=2`` does.

The worker runs its database work in threads (``asyncio.to_thread``); on glibc each
thread that meets contention gets a malloc arena of its own, and each arena keeps the
high-water mark of what was allocated in it. A backfill's windows (thousands of records
parsed and applied per window, on whichever pool thread is free) so raised the peak RSS
with every window: 96 MB at 10k records, 145 MB at 100k; with two arenas it stays at
~120 MB from 50k to 100k (``docs/benchmarks.md``).

:func:`limit_arenas` calls ``mallopt(M_ARENA_MAX, n)`` at start-up, before any thread
exists. An operator's own ``MALLOC_ARENA_MAX`` wins; elsewhere than glibc it does nothing
and says so by returning ``False``.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["ARENAS", "limit_arenas"]

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap the arenas at ``count``; ``True`` when glibc took the setting."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator chose
    try:  # the symbols already loaded (libc among them): no library search at start-up
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to cap
        return False
    return bool(mallopt(_M_ARENA_MAX, count) == 1)
