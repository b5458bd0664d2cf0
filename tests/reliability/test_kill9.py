"""kill -9 of `run` at random moments under two-way load, again and again, on SQLite and
PostgreSQL: then quiesce, and both sides must agree record by record, with nothing lost,
no portal record created twice, no ERP row too many, and no 503 from the portal (the rate
budget lives in the database, so a restart never starts from an empty bucket).

The kills land anywhere: during start-up and recovery, inside a drain transaction, after
a commit before its clear, between a portal write and its local commit, idle polling.
``B24_TEST_KILL_ROUNDS`` sets the rounds (CI: 20 per backend; 200 for a long run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import cli, setup_connector
from tests.service.test_worker import served

__all__ = ["served"]

ROUNDS = int(os.environ.get("B24_TEST_KILL_ROUNDS", "20"))
RATE, BURST = 2.0, 10  # the portal's pace, a small bucket: a restart that forgot it overflows


def load(emulator: Emulator, erp: sa.Engine, rng: random.Random, round_: int) -> None:
    """One round of edits on both sides. The portal edits titles and deletes; the ERP
    inserts and edits comments (disjoint fields: no conflict is expected)."""
    crm = emulator.portal().crm
    live = list(crm.ids("company"))
    emulator.ui_add("crm.company", {"TITLE": f"P{round_}"})
    for b24_id in rng.sample(live, min(2, len(live))):
        emulator.ui_update("crm.company", b24_id, {"TITLE": f"T{round_}-{b24_id}"})
    if live and rng.random() < 0.3:
        emulator.ui_delete("crm.company", rng.choice(live))
    with erp.begin() as conn:
        conn.execute(sa.text("INSERT INTO erp_company (title) VALUES (:t)"), {"t": f"E{round_}"})
        linked = (
            conn.execute(sa.text("SELECT id FROM erp_company WHERE b24_id IS NOT NULL"))
            .scalars()
            .all()
        )
        for key in rng.sample(list(linked), min(2, len(linked))):
            conn.execute(
                sa.text("UPDATE erp_company SET comments = :c WHERE id = :k"),
                {"c": f"C{round_}-{key}", "k": key},
            )


def converged(emulator: Emulator, erp: sa.Engine, connector_id: str) -> list[str]:
    """What still differs between the sides (empty: they agree)."""
    crm = emulator.portal().crm
    portal = {i: crm.get("company", i) for i in crm.ids("company")}
    with erp.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM erp_company")).mappings()]
    wrong: list[str] = []
    by_b24: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row["b24_id"] is None:
            wrong.append(f"ERP row {row['id']} never reached the portal")
        else:
            by_b24.setdefault(int(row["b24_id"]), []).append(row)
    for b24_id, twins in by_b24.items():
        if len(twins) > 1:
            wrong.append(f"portal record {b24_id} has {len(twins)} ERP rows")
        row = twins[0]
        if b24_id not in portal:
            if row["b24_deleted_at"] is None:
                wrong.append(f"portal record {b24_id} is gone, its ERP row is not marked")
            continue
        record = portal[b24_id]
        for column, code in (("title", "TITLE"), ("comments", "COMMENTS")):
            if (row[column] or "") != (record[code] or ""):
                wrong.append(f"{b24_id}.{code}: ERP {row[column]!r}, portal {record[code]!r}")
    for b24_id in portal:
        if b24_id not in by_b24:
            wrong.append(f"portal record {b24_id} never reached the ERP")
    made = [r["ORIGIN_ID"] for r in portal.values() if r["ORIGINATOR_ID"] == connector_id]
    wrong += [
        f"ERP row {k} was created in the portal twice" for k in set(made) if made.count(k) > 1
    ]
    return wrong


def quiesce_and_check(
    emulator: Emulator, erp: sa.Engine, env: dict[str, str], tmp_path: Path
) -> None:
    """After the faults: two ``sync --once`` rounds, then both sides agree and the queue
    is empty (the engine is disposed either way)."""
    for _ in range(2):
        done = cli("sync", "--once", cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
    try:
        assert converged(emulator, erp, env["B24_CONNECTOR_ID"]) == []
        assert emulator.queue_state() == []
    finally:
        erp.dispose()


def limited_connector(
    emulator: Emulator, server: ServerThread, db_url: str, tmp_path: Path
) -> dict[str, str]:
    """A connector set up and bound, the portal and the connector at 2/s with a small
    bucket (a restart that forgot the bucket would overflow it)."""
    emulator.set_limits(rate=RATE, burst=BURST, reset=True)
    env = setup_connector(emulator, server, db_url, tmp_path)
    env = {**env, "B24_RATE_LIMIT": str(RATE), "B24_RATE_BURST": str(BURST)}
    bound = cli("sync", "--once", cwd=tmp_path, env=env)  # the offline bindings first
    assert bound.returncode == 0, bound.stderr
    return env


@pytest.mark.backends("sqlite", "postgresql")
def test_kill_9_under_two_way_load_loses_nothing_and_duplicates_nothing(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    emulator, server = served
    env = limited_connector(emulator, server, db_url, tmp_path)
    erp = make_engine(db_url)
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    rng = random.Random(int(os.environ.get("B24_TEST_KILL_SEED", "4321")))
    argv = [sys.executable, "-m", "connector", "run", "--poll-interval", "0.3"]
    argv += ["--push-interval", "0.2", "--no-listen"]
    try:
        for round_ in range(ROUNDS):
            load(emulator, erp, rng, round_)
            proc = subprocess.Popen(
                argv,
                cwd=tmp_path,
                env={**base, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.9, 2.4))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for _ in range(3):  # quiesce: the last round's work, then a round that finds none
            done = cli("sync", "--once", cwd=tmp_path, env=env)
            assert done.returncode == 0, done.stderr
        with erp.connect() as conn:  # named in the failure: what holds a record back
            held = conn.execute(
                sa.text("SELECT b24_id, fields FROM sync_conflict WHERE status = 'open'")
            ).all()
            waiting = conn.execute(
                sa.text("SELECT erp_key, op, status, note FROM sync_outbox WHERE status != 'done'")
            ).all()
        wrong = converged(emulator, erp, env["B24_CONNECTOR_ID"])
        assert wrong == [], f"{wrong}; open conflicts {held}; outbox not done {waiting}"
        assert emulator.queue_state() == []
        with erp.connect() as conn:
            stuck = conn.execute(
                sa.text("SELECT count(*) FROM sync_outbox WHERE status != 'done'")
            ).scalar()
        assert stuck == 0
        refused = [e for e in emulator.requests() if e.status == 503]
        assert refused == [], f"{len(refused)} answers 503 from the portal"
    finally:
        erp.dispose()
