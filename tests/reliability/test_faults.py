"""Faults from the portal while `run` works under two-way load: a burst of 500s, a portal
whose bucket is suddenly slower than ours (503 ``QUERY_LIMIT_EXCEEDED`` bursts), expired
access tokens, slow replies. `run` never dies; once the faults stop, the sides converge
with nothing lost or duplicated, and outside the throttled phase the portal never had to
refuse a request for the rate. ``OPERATION_TIME_LIMIT`` comes from a budget shrunk to
seconds (the emulator's ``operating_window``): ``batch`` billed 9 s a call against 8 s in
an 8 s window, so one batch passes and the next is refused until its basket drops out.

Covered elsewhere: WebSocket drops and refusals
(`tests/adapters/test_pull_*`), the database cut mid-transaction
(`tests/service/test_worker_database_faults.py`), the app uninstalled and reinstalled
(`tests/service/test_reconcile.py`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connector.adapters.store.database import make_engine
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.reliability.test_kill9 import BURST, RATE, limited_connector, load, quiesce_and_check
from tests.service.test_worker import served

__all__ = ["served"]


@pytest.mark.backends("sqlite", "postgresql")
def test_run_rides_out_portal_faults_and_converges(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    emulator, server = served
    env = limited_connector(emulator, server, db_url, tmp_path)
    erp = make_engine(db_url)
    rng = random.Random(99)
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115 - closed below
    argv = [sys.executable, "-m", "connector", "run", "--poll-interval", "0.3"]
    proc = subprocess.Popen(
        [*argv, "--push-interval", "0.2", "--no-listen"],
        cwd=tmp_path,
        env={**base, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client_id = env["B24_CLIENT_ID"]
    throttled: list[tuple[float, float]] = []

    def throttle_on() -> None:
        throttled.append((emulator.clock.now(), float("inf")))
        emulator.set_limits(rate=0.5, burst=1)

    def throttle_off() -> None:
        emulator.set_limits(rate=RATE, burst=BURST, reset=True)
        throttled[-1] = (throttled[-1][0], emulator.clock.now() + 1.0)

    def operating_limit_on() -> None:
        emulator.set_limits(costs={"batch": 9.0}, operating_limit=8.0, operating_window=8.0)
        load(emulator, erp, rng, 50)  # work for the budget to refuse

    def operating_limit_off() -> None:
        emulator.set_limits(costs={"batch": None}, operating_limit=480.0, operating_window=600.0)

    phases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("500 burst", lambda: emulator.set_faults(fail_next=6), emulator.clear_faults),
        ("503 QUERY_LIMIT_EXCEEDED bursts", throttle_on, throttle_off),
        ("expired access tokens", lambda: emulator.expire_tokens(client_id), lambda: None),
        ("slow replies", lambda: emulator.set_faults(delay=0.8), emulator.clear_faults),
        ("OPERATION_TIME_LIMIT", operating_limit_on, operating_limit_off),
    ]
    try:
        for round_, (_name, start, stop) in enumerate(phases):
            load(emulator, erp, rng, round_)
            start()
            time.sleep(2.5)
            stop()
            load(emulator, erp, rng, round_ + 10)
            time.sleep(1.5)
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    quiesce_and_check(emulator, erp, env, tmp_path)
    rate_refusals = [
        e
        for e in emulator.requests()
        if e.error == "QUERY_LIMIT_EXCEEDED" and not any(a <= e.time <= b for a, b in throttled)
    ]
    assert rate_refusals == []
    seen = {e.error for e in emulator.requests()} | {e.status for e in emulator.requests()}
    assert {"QUERY_LIMIT_EXCEEDED", "expired_token", "OPERATION_TIME_LIMIT", 500} <= seen
    assert any(e.kind == "oauth" for e in emulator.requests())  # and the expiry refreshed
