"""The start-up heap frozen out of the collector's sight: once per process, by the verbs."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.adapters import startup_heap
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import served, setup_connector  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as if no verb had run in it yet; thawed again afterwards."""
    gc.unfreeze()
    monkeypatch.setattr(startup_heap, "_frozen", False)
    yield
    gc.unfreeze()


def test_the_first_call_freezes_what_is_alive_and_later_ones_nothing(unfrozen: None) -> None:
    """The objects alive at the first call leave the collector's generations; garbage made
    afterwards is still collected; a second call (another verb in the same process)
    freezes nothing more."""
    assert gc.get_freeze_count() == 0
    assert startup_heap.freeze_startup_heap() is True
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the imported modules alone are thousands of containers
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made after start-up, reachable only from itself
    del cycle
    assert gc.collect() >= 1  # still found and freed: the thresholds are CPython's
    assert startup_heap.freeze_startup_heap() is False
    assert gc.get_freeze_count() == frozen


_PROBE = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.stderr))\n"
    "from connector.service.cli import main\n"
    "main(sys.argv[1:])\n"
)


@pytest.mark.backends("sqlite")
def test_sync_once_freezes_the_composed_heap_before_its_work(
    served: tuple[Emulator, ServerThread],  # noqa: F811
    db_url: str,
    tmp_path: Path,
) -> None:
    """``sync --once`` (as ``backfill`` and ``run``) freezes once it has composed its
    engine and mappings: at exit the frozen count holds the start-up heap."""
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "sync", "--once", "--json"],
        cwd=tmp_path,
        env={**base, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == 0
    frozen = int(done.stderr.rsplit("frozen ", 1)[1].split()[0])
    assert frozen > 10_000, done.stderr  # SQLAlchemy, pydantic, httpx, click and ours
