"""The worker: a push wakes the drain, the safety poll covers a missed push, SIGTERM is clean."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.rest_client import RestClient, RetryPolicy
from connector.adapters.store import migrate
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_schema import sync_erp_schema
from connector.adapters.store.tokens import TokenStore
from connector.core.oauth_tokens import parse_token_answer
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from connector.service import wiring
from connector.service.worker import Worker
from tests.service.drain_harness import CONNECTOR, REPO, StaticToken


@pytest.fixture
def served() -> Iterator[tuple[Emulator, ServerThread]]:
    emulator = Emulator()
    with ServerThread(emulator) as server:
        yield emulator, server


async def eventually(check: Callable[[], bool], limit: float = 15.0) -> None:
    """Wait until ``check()`` holds (a bound for a hung test, not a performance claim)."""
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - the condition lives in a database, not an Event
            await asyncio.sleep(0.02)


def built(client: Any, http: Any, engine: sa.Engine, **options: Any) -> Worker:
    """A worker as `run` builds it, on the shipped mappings and the test connector."""
    return wiring.worker(
        client, http, engine, load_mappings(REPO / "mappings"), CONNECTOR, **options
    )


def titles(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT title FROM erp_company ORDER BY b24_id")).scalars()
        )


WorkerEnv = tuple[Emulator, sa.Engine, RestClient, httpx.AsyncClient]


@pytest.fixture
async def worker_env(
    served: tuple[Emulator, ServerThread], tmp_path: Path
) -> AsyncIterator[WorkerEnv]:
    emulator, server = served
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    migrate.upgrade(engine)
    sync_erp_schema(engine, load_mappings(REPO / "mappings"))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        client = RestClient(
            http,
            f"{server.base_url}/rest/",
            connector_id=CONNECTOR,
            auth=StaticToken(creds["access_token"]),
        )
        yield emulator, engine, client, http
    engine.dispose()


async def test_a_push_wakes_the_drain_and_stop_is_clean(worker_env: WorkerEnv) -> None:
    """With the safety poll an hour away, a UI change still reaches the ERP: the
    event_offline push woke the drain. stop() then ends run() normally."""
    emulator, engine, client, http = worker_env
    worker = built(client, http, engine, poll_interval=3600)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    await eventually(lambda: worker.listener is not None and worker.listener.stats.connects > 0)
    emulator.ui_add("crm.company", {"TITLE": "Pushed"})
    await eventually(lambda: titles(engine) == ["Pushed"])
    assert worker.listener is not None and worker.listener.stats.wakes >= 1
    worker.stop()
    stats = await asyncio.wait_for(task, 15)
    assert stats.totals.inserted == 1
    assert emulator.queue_state() == []


async def test_without_push_the_safety_poll_drains(worker_env: WorkerEnv) -> None:
    """No listener at all: the safety poll alone picks the change up."""
    emulator, engine, client, http = worker_env
    worker = built(client, http, engine, poll_interval=0.2, listen=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    # the start-up wake is spent and no drain is under way (a wake counted but not yet
    # drained would pick the change up without a later wake): captured in the same step
    await eventually(lambda: 1 <= worker.stats.drains == worker.stats.wakes)
    wakes = worker.stats.wakes
    emulator.ui_add("crm.company", {"TITLE": "Polled"})
    await eventually(lambda: titles(engine) == ["Polled"])
    assert worker.stats.wakes > wakes  # a later wake — the poll's, nothing else wakes it
    worker.stop()
    await asyncio.wait_for(task, 15)


async def test_a_failed_drain_is_retried_and_its_locks_resumed(worker_env: WorkerEnv) -> None:
    """A batch that fails after reserving (500s on the fetch) is resumed on the next wake."""
    emulator, engine, client, http = worker_env
    client.retry = RetryPolicy(attempts=1)
    worker = built(client, http, engine, poll_interval=0.2, listen=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    emulator.set_faults(fail_methods={"batch": None})  # 500 until cleared
    emulator.ui_add("crm.company", {"TITLE": "Late"})
    await eventually(lambda: worker.stats.failures >= 1)
    assert worker.current_state() == "degraded"  # what /readyz says meanwhile
    emulator.clear_faults()
    await eventually(lambda: titles(engine) == ["Late"])
    await eventually(lambda: worker.current_state() == "running")
    worker.stop()
    await asyncio.wait_for(task, 15)
    assert emulator.queue_state() == []


def test_run_exits_0_on_sigterm_after_draining(
    served: tuple[Emulator, ServerThread], tmp_path: Path
) -> None:
    """`b24-connector run` as a process: drains what waits, then SIGTERM → exit 0."""
    emulator, server = served
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    db_url = f"sqlite:///{tmp_path}/c.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env.update(
        {
            "B24_PORTAL_URL": server.base_url,
            "B24_OAUTH_URL": server.base_url,
            "B24_CLIENT_ID": creds["client_id"],
            "B24_CLIENT_SECRET": creds["client_secret"],
            "B24_CONNECTOR_ID": CONNECTOR,
            "B24_DATABASE_URL": db_url,
        }
    )
    cli = [sys.executable, "-m", "connector"]
    assert (
        subprocess.run(
            [*cli, "db", "upgrade"], env=env, cwd=tmp_path, check=False, capture_output=True
        ).returncode
        == 0
    )
    engine = make_engine(db_url)
    host = server.base_url.split("://", 1)[1]
    TokenStore(engine, host).save(parse_token_answer(host, creds, datetime.now(UTC)))
    proc = subprocess.Popen(
        [*cli, "run", "--poll-interval", "0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # the worker binds at start-up; changes before that are not queued for it
        bindings = emulator.portal().events
        asyncio.run(
            eventually(lambda: len(bindings.bindings_of(creds["client_id"])) == 12, limit=30)
        )
        emulator.ui_add("crm.company", {"TITLE": "Service"})
        asyncio.run(eventually(lambda: titles(engine) == ["Service"], limit=30))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("stopped: ")
    engine.dispose()


async def test_a_plan_downgrade_stops_the_worker_with_its_reason(worker_env: WorkerEnv) -> None:
    """WRONG_LICENSE after a downgrade is a stop with a line naming the plan, not a loop."""
    from connector.errors import FatalPortalError

    emulator, engine, client, http = worker_env
    worker = built(client, http, engine, poll_interval=0.2, listen=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    emulator.set_plan("basic")
    with pytest.raises(FatalPortalError, match="plan no longer includes"):
        await asyncio.wait_for(task, 15)


def flaky(worker: Worker, deaths: list[BaseException]) -> Any:
    """The worker (built by the composition root) with a push task that dies: first of
    something transient, then of a bug; ``starts`` counts its starts."""
    flaky_worker: Any = worker
    flaky_worker.deaths, flaky_worker.starts = deaths, 0

    async def push_loop() -> None:
        flaky_worker.starts += 1
        if flaky_worker.deaths:
            raise flaky_worker.deaths.pop(0)
        await worker.stopping.wait()

    flaky_worker._push_loop = push_loop
    return flaky_worker


async def test_a_task_that_dies_of_something_transient_is_restarted(
    worker_env: WorkerEnv,
) -> None:
    """The push task fails with a connection error: restarted with back-off, the worker
    keeps running and stops cleanly when asked."""
    _emulator, engine, client, http = worker_env
    worker = flaky(
        built(client, http, engine, poll_interval=0.2, listen=False),
        deaths=[ConnectionResetError("reset")],
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    await eventually(lambda: worker.starts == 2, limit=15)
    assert not task.done()
    worker.stop()
    await asyncio.wait_for(task, 15)


async def test_a_task_that_dies_of_a_bug_stops_the_worker_naming_it(
    worker_env: WorkerEnv,
) -> None:
    """An unexpected error in a task ends the worker with one line naming task and cause."""
    from connector.errors import ConnectorError

    _emulator, engine, client, http = worker_env
    worker = flaky(
        built(client, http, engine, poll_interval=0.2, listen=False),
        deaths=[KeyError("oops")],
    )
    with pytest.raises(ConnectorError, match="pusher died: KeyError"):
        await asyncio.wait_for(worker.run(), 15)


async def test_a_portal_away_at_start_up_is_waited_for_and_a_stop_is_immediate(
    tmp_path: Path,
) -> None:
    """Nothing listens at the portal's address when the worker starts: it stays in
    "starting" (retrying), and a stop request ends it at once, cleanly."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    migrate.upgrade(engine)
    async with httpx.AsyncClient() as http:
        client = RestClient(http, f"{dead}/rest/", connector_id=CONNECTOR, auth=StaticToken("t"))
        worker = built(client, http, engine)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        assert not task.done() and worker.current_state() == "starting"
        worker.stop()
        stats = await asyncio.wait_for(task, 5)
    assert stats.drains == 0
    engine.dispose()


async def test_the_worker_prunes_old_journal_entries_as_it_starts(worker_env: WorkerEnv) -> None:
    """A batch cleared a month ago is deleted by the running worker (housekeeping runs at
    start-up, then hourly); a reserved one of the same age is left for its resume."""
    from datetime import UTC, datetime, timedelta

    from connector.adapters.store.tables import sync_journal

    _emulator, engine, client, http = worker_env
    old = datetime.now(UTC) - timedelta(days=30)
    with engine.begin() as conn:
        conn.execute(
            sync_journal.insert().values(
                process_id="month-old",
                connector_id=CONNECTOR,
                state="cleared",
                record_ids=[],
                events=[],
                created_at=old,
                updated_at=old,
            )
        )
    worker = built(client, http, engine, listen=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)

    def pruned() -> bool:
        with engine.connect() as conn:
            left = conn.execute(sa.select(sync_journal.c.process_id)).scalars().all()
        return "month-old" not in left

    await eventually(pruned)
    worker.stop()
    await asyncio.wait_for(task, 15)


async def test_the_worker_prunes_on_its_interval_with_the_keep_it_was_given(
    worker_env: WorkerEnv,
) -> None:
    """With ``B24_JOURNAL_KEEP_HOURS`` and ``B24_PRUNE_INTERVAL`` short (a soak's settings),
    a batch cleared just now outlives the prunes of its first second and is gone once it is
    older than the keep: housekeeping runs again on its interval, not only at start-up."""
    from datetime import UTC, datetime, timedelta

    from connector.adapters.store.tables import sync_journal
    from connector.service.worker_upkeep import Keep

    _emulator, engine, client, http = worker_env
    keep = Keep(journal=timedelta(seconds=1.5), every=0.2)
    worker = built(client, http, engine, listen=False, keep=keep)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sync_journal.insert().values(
                process_id="just-now",
                connector_id=CONNECTOR,
                state="cleared",
                record_ids=[],
                events=[],
                created_at=now,
                updated_at=now,
            )
        )

    def left() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(sync_journal.c.process_id)).scalars().all())

    await asyncio.sleep(0.6)  # three prunes later: younger than the keep, still there
    assert "just-now" in left()
    await eventually(lambda: "just-now" not in left())
    worker.stop()
    await asyncio.wait_for(task, 15)


async def test_records_a_resume_finishes_count_as_synced_in_the_metrics(
    worker_env: WorkerEnv,
) -> None:
    """A batch reserved by a process that died is finished by the worker's start-up
    resume: /metrics counts those records (it used to count fresh batches only, so a
    worker that only resumed looked as if it had synced nothing)."""
    from connector.service.drainer import Drainer

    emulator, engine, client, http = worker_env
    mappings = load_mappings(REPO / "mappings")
    await client.call("event.bind", {"event": "ONCRMCOMPANYADD", "event_type": "offline"})
    emulator.ui_add("crm.company", {"TITLE": "Reserved, then a kill"})

    def die(step: str) -> None:
        if step == "after_reserve":
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        await Drainer(client, engine, mappings, CONNECTOR, checkpoint=die).drain_until_empty()
    worker = wiring.worker(client, http, engine, mappings, CONNECTOR, listen=False)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 15)
    await eventually(lambda: titles(engine) == ["Reserved, then a kill"])
    counted = worker.metrics.synced.labels("to_erp", "inserted")._value.get()
    worker.stop()
    await asyncio.wait_for(task, 15)
    assert counted == 1
