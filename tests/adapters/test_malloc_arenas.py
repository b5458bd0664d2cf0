"""The malloc arena cap: what keeps the worker's RSS flat while threads apply windows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from connector.adapters import malloc_arenas

REPO = Path(__file__).resolve().parents[2]

# Eight threads allocating at once, then glibc's own count of its arenas (malloc_info).
_PROBE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from connector.adapters.malloc_arenas import limit_arenas
    if sys.argv[1] == "cap":
        print("capped" if limit_arenas() else "not capped", file=sys.stderr)
    go = threading.Barrier(8)
    def churn():
        go.wait()
        for _ in range(3):
            junk = [bytearray(200) for _ in range(20000)]
            del junk
    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    out = sys.argv[2].encode()
    fp = ctypes.c_void_p(libc.fopen(out, b"w"))
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(out).read().count("<heap nr="))
    """
)


def _arenas(mode: str, tmp: Path, env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(tmp / f"{mode}.xml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


def _glibc() -> bool:
    return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


@pytest.mark.skipif(
    not _glibc(), reason="the arena cap is a glibc setting; other C libraries have none to test"
)
def test_the_cap_holds_eight_busy_threads_to_two_arenas(tmp_path: Path) -> None:
    """Capped, eight threads allocating at once share two arenas; uncapped they make more
    (the growth the cap exists to stop)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    assert _arenas("cap", tmp_path, env) <= malloc_arenas.ARENAS
    assert _arenas("free", tmp_path, env) > malloc_arenas.ARENAS


def test_an_operators_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MALLOC_ARENA_MAX`` in the environment: the connector leaves malloc alone."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")

    assert malloc_arenas.limit_arenas() is False


def test_the_cli_caps_the_arenas_before_it_runs_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``b24-connector …`` caps the arenas first, before any command starts a thread."""
    from connector.service import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "limit_arenas", lambda: calls.append("capped") or True)
    with pytest.raises(SystemExit):
        cli.main(["--version"])

    assert calls == ["capped"]
