"""Several `run` workers on one PostgreSQL database, as ops scale out: one listener with
takeover when it is killed, disjoint batches, one rate budget, nothing applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.adapters.store.tables import sync_link, sync_worker
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import setup_connector
from tests.service.test_worker import eventually, served

__all__ = ["served"]

LEASE_S = 6.0


def start_worker(env: dict[str, str], cwd: Path, log: Any) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "run",
            "--poll-interval",
            "2",
            "--push-interval",
            "0.5",
        ],
        cwd=cwd,
        env={**base, **env, "B24_WORKER_LEASE": str(LEASE_S)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def listener_pid(engine: sa.Engine) -> int | None:
    with engine.connect() as conn:
        pids = (
            conn.execute(
                sa.select(sync_worker.c.pid).where(
                    sync_worker.c.listener.is_(True),
                    sync_worker.c.lease_until > sa.func.now(),
                )
            )
            .scalars()
            .all()
        )
    return pids[0] if len(pids) == 1 else None


def erp_companies(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM erp_company")).mappings()]


@pytest.mark.backends("postgresql")
def test_three_workers_survive_the_listener_being_killed(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    engine = make_engine(db_url)
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    handles = [log.open("wb") for log in logs]
    workers = [start_worker(env, tmp_path, handle) for handle in handles]
    stop_stream = threading.Event()
    portal_ids: list[int] = []
    erp_titles: list[str] = []

    def stream() -> None:
        """A steady trickle of changes on both sides while the workers run."""
        n = 0
        while not stop_stream.is_set():
            n += 1
            portal_ids.append(emulator.ui_add("crm.company", {"TITLE": f"P{n}"}))
            if n % 3 == 0:
                emulator.ui_update("crm.company", portal_ids[n // 2], {"COMMENTS": f"edit {n}"})
            if n % 4 == 0:
                title = f"E{n}"
                with engine.begin() as conn:
                    conn.execute(
                        sa.text("INSERT INTO erp_company (title) VALUES (:t)"), {"t": title}
                    )
                erp_titles.append(title)
            time.sleep(0.15)

    feeder = threading.Thread(target=stream)
    try:
        asyncio.run(eventually(lambda: listener_pid(engine) is not None, limit=60))
        feeder.start()
        time.sleep(4)
        holder = listener_pid(engine)
        assert holder is not None
        os.kill(holder, signal.SIGKILL)
        killed_at = time.monotonic()
        asyncio.run(
            eventually(lambda: listener_pid(engine) not in (None, holder), limit=LEASE_S * 3)
        )
        takeover_s = time.monotonic() - killed_at
        time.sleep(4)  # the stream goes on under the new listener
        stop_stream.set()
        feeder.join(timeout=10)

        def converged() -> bool:
            rows = erp_companies(engine)
            return (
                emulator.queue_state() == []
                and {r["b24_id"] for r in rows} >= set(portal_ids)
                and all(r["b24_id"] is not None for r in rows)
            )

        try:
            asyncio.run(eventually(converged, limit=90))
        except TimeoutError:
            rows = erp_companies(engine)
            missing = set(portal_ids) - {r["b24_id"] for r in rows}
            tails = [log.read_text()[-1500:] for log in logs]
            raise AssertionError(
                f"no convergence: queue {emulator.queue_state()[:5]}, missing {sorted(missing)}, "
                f"unlinked {[r['title'] for r in rows if r['b24_id'] is None]}, logs {tails}"
            ) from None
    finally:
        stop_stream.set()
        engine.dispose()
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in handles:
            handle.close()
    assert takeover_s <= LEASE_S, f"takeover took {takeover_s:.1f} s"
    survivors = [p for p in workers if p.pid != holder]
    assert [p.returncode for p in survivors] == [0, 0], [log.read_text()[-2000:] for log in logs]

    rows = erp_companies(engine)
    crm = emulator.portal().crm
    portal = [crm.get("company", i) for i in crm.ids("company")]
    assert len(rows) == len({r["b24_id"] for r in rows}) == len(portal)  # no row twice
    assert sorted(r["TITLE"] for r in portal) == sorted(r["title"] for r in rows)
    assert sorted(t for t in (r["TITLE"] for r in portal) if t.startswith("E")) == sorted(
        erp_titles
    )  # every ERP insert created once in the portal
    with engine.connect() as conn:
        links = conn.execute(
            sa.select(sync_link.c.b24_id).where(sync_link.c.entity == "crm.company")
        ).all()
    assert len(links) == len(portal)
    statuses = [entry.status for entry in emulator.requests()]
    assert 503 not in statuses  # one shared budget: never over the portal's limit
    engine.dispose()
    adopted = "".join(log.read_text() for log in logs)
    assert "worker registered" in adopted
