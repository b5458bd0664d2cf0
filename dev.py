#!/usr/bin/env python3
"""Developer entry point that needs nothing but Python 3.11+.

    python3 dev.py demo     # install into .venv if needed, then run the demo sync
    python3 dev.py test     # install into .venv if needed, then run the whole test suite
                            # (two processes; ``-n 0`` for one)
    python3 dev.py check    # ruff (lint + format check) and mypy --strict on connector/

The virtual environment lives in ``.venv`` (override with ``B24_VENV``); it is (re)installed
whenever ``pyproject.toml`` changes. Extra arguments go to the tool (``dev.py test -k queue``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("B24_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".b24-installed"


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    print("installing b24-connector with its test tools (first run only)", flush=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def run(*cmd: str) -> int:
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "check"}:
        print(__doc__)
        return 2
    ensure_venv()
    verb, rest = argv[0], argv[1:]
    if verb == "demo":
        return run(str(BIN / "b24-connector"), "demo", *rest)
    if verb == "test":
        # two processes by default (most tests wait on sockets and subprocesses); each has
        # its own server databases. `dev.py test -n 0` runs in one process.
        spread = ["-n", "2", "--dist", "worksteal"]  # idle workers take from busy ones
        if any(a == "-n" or a.startswith("-n") for a in rest):
            spread = []
        code = run(str(BIN / "python"), "-m", "pytest", *spread, *rest)
        return 1 if code == 5 else code  # 5 = no tests collected: never a pass
    lint = run(str(BIN / "ruff"), "check", ".")
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    types = run(str(BIN / "mypy"))
    return max(lint, fmt, types)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
