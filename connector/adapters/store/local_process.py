"""Is a process of this host gone? (A ``kill -9``ed worker, so its claims can be freed.)

"This host" is :func:`host_identity`: the host name plus, on Linux, the PID namespace and
the boot id. Two containers (or a container and the host) can share a host name with
host networking while their PIDs mean different things; only a process with the same
identity is looked up by PID, everyone else waits out the lease.

A killed child stays a zombie until its parent reaps it; ``kill(pid, 0)`` still succeeds
on a zombie, so on Linux its state in ``/proc`` is read too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from pathlib import Path

__all__ = ["host_identity", "process_gone"]


@functools.cache
def host_identity() -> str:
    """``host/pidns-N/boot-X`` (no ``:``): where a PID of this process means the same."""
    parts = [socket.gethostname()[:120] or "host"]
    with contextlib.suppress(OSError):
        parts.append(f"pidns-{os.stat('/proc/self/ns/pid').st_ino}")
    with contextlib.suppress(OSError):
        parts.append("boot-" + Path("/proc/sys/kernel/random/boot_id").read_text()[:8])
    return "/".join(parts)


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
