"""Peak resident memory of this process, per measurement.

``getrusage``'s ``ru_maxrss`` is the peak over the whole process, so a script measuring
several sizes one after another would report the largest so far for each. On Linux the
peak (``VmHWM``) can be reset by writing ``5`` to ``/proc/self/clear_refs``: :func:`reset`
does that before a measurement and :func:`peak_mb` reads it after. Elsewhere the figure
is the process's peak so far, and :data:`PER_MEASUREMENT` says so. The scripts that
run the connector in their own process cap malloc's arenas first, as ``b24-connector``
does (``connector/adapters/malloc_arenas.py``), so the figure is the connector's.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PER_MEASUREMENT", "in_own_process", "peak_mb", "reset"]

_CLEAR = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _can_reset() -> bool:
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


PER_MEASUREMENT = _can_reset()


def reset() -> None:
    """Start a new peak (where the kernel allows it)."""
    if PER_MEASUREMENT:
        _CLEAR.write_text("5")


def peak_mb() -> float:
    """The peak RSS since :func:`reset` (Linux), else since the process started."""
    if PER_MEASUREMENT:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_own_process(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh interpreter and return the JSON object its
    last line prints: one measurement whose peak RSS is its own (in a shared process,
    what an earlier measurement left on the heap would count in the next one's peak)."""
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=Path(script).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
