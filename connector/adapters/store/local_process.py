"""Is a process of this host gone? (A ``kill -9``ed worker, so its claims can be freed.)

A killed child stays a zombie until its parent reaps it; ``kill(pid, 0)`` still succeeds
on a zombie, so on Linux its state in ``/proc`` is read too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_gone"]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process, alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc here: kill(pid, 0) said alive
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
