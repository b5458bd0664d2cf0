"""Keeping the cyclic garbage collector off the objects that live as long as the process.

By the time a verb starts its work, the heap holds some 80,000 container objects that
will never be garbage: the imported modules (SQLAlchemy, pydantic, httpx, click), the
mappings, the engine and its compiled statements. CPython's collector walks all of them
in every full (oldest-generation) collection, and an apply allocates fast enough to run
one every few windows: on a 50,000-record apply, 1.2 s of 5.3 s went to collections,
most of it re-scanning those start-up objects (``gc.callbacks`` timing, see
``docs/benchmarks.md``).

:func:`freeze_startup_heap` collects once and then ``gc.freeze()``-s what is left, the
documented way to move the start-up heap out of the collector's sight (it is never
scanned again, and never freed: it lives until exit anyway). The thresholds stay
CPython's, so garbage made after start-up is collected exactly as before. It acts once
per process: a second call (a test run invoking several verbs) freezes nothing more.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]

_frozen = False


def freeze_startup_heap() -> bool:
    """Freeze the objects alive now; ``True`` the first time, ``False`` after."""
    global _frozen
    if _frozen:
        return False
    _frozen = True
    gc.collect()
    gc.freeze()
    return True
