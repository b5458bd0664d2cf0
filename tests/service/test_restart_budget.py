"""kill -9 and restart `run`, again and again, on SQLite: the rate budget lives in the
database, so no restart starts from an empty bucket and the portal never answers 503."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import cli, setup_connector
from tests.service.test_worker import eventually, served

__all__ = ["served"]

ROUNDS = int(os.environ.get("B24_TEST_ROUNDS", "30"))
RATE, BURST = 2.0, 10  # the portal's pace, a small bucket: a restart that forgot it overflows


def test_thirty_kill_9_restarts_draw_no_503_and_lose_nothing(
    served: tuple[Emulator, ServerThread], tmp_path: Path
) -> None:
    emulator, server = served
    emulator.set_limits(rate=RATE, burst=BURST, reset=True)
    db_url = f"sqlite:///{tmp_path}/c.db"
    env = setup_connector(emulator, server, db_url, tmp_path)
    env = {**env, "B24_RATE_LIMIT": str(RATE), "B24_RATE_BURST": str(BURST)}
    bound = cli("sync", "--once", cwd=tmp_path, env=env)  # the offline bindings first
    assert bound.returncode == 0, bound.stderr
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    rng = random.Random(1234)
    ids: list[int] = []
    for round_ in range(ROUNDS):
        for n in range(2):
            ids.append(emulator.ui_add("crm.company", {"TITLE": f"R{round_}-{n}"}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--poll-interval", "0.3", "--no-listen"],
            cwd=tmp_path,
            env={**base, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.8, 1.6))  # anywhere: start-up, mid-batch, idle polling
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    done = cli("sync", "--once", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    engine = make_engine(db_url)

    def landed() -> bool:
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT b24_id FROM erp_company")).scalars().all()
        return sorted(got) == sorted(ids)

    asyncio.run(eventually(landed, limit=30))
    engine.dispose()
    assert emulator.queue_state() == []
    refused = [e for e in emulator.requests() if e.status == 503]
    assert refused == [], f"{len(refused)} answers 503 from the portal"
