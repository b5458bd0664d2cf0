"""Workers with identities and leases: a live peer's reservation is never taken over, a
dead one's is, orphans are claimed once, and a lost ``get`` answer is recovered at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.rest_client import RestClient
from connector.adapters.store import migrate
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_schema import sync_erp_schema
from connector.adapters.store.journal import Journal
from connector.adapters.store.outbox import OutboxStore
from connector.adapters.store.tables import sync_journal, sync_worker
from connector.adapters.store.workers import WorkerRegistry
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from connector.errors import PortalError
from connector.service import wiring
from connector.service.drainer import Drainer
from tests.service.drain_harness import (
    BASE,
    CONNECTOR,
    REPO,
    Bench,
    Crash,
    StaticToken,
)
from tests.service.test_worker import WorkerEnv, built, eventually, served, titles, worker_env

__all__ = ["served", "worker_env"]  # fixtures used here


@pytest.fixture
def bench(schema_bench: Bench) -> Bench:
    return schema_bench  # the shared schema: these tests do not build it


def drainer_of(bench: Bench, registry: WorkerRegistry, crash_at: str | None = None) -> Drainer:
    def checkpoint(step: str) -> None:
        if step == crash_at:
            raise Crash(step)

    return Drainer(
        bench.client,
        bench.engine,
        bench.mappings,
        CONNECTOR,
        journal=Journal(bench.engine, CONNECTOR, registry.id),
        peers_alive=lambda: bool(registry.peers()),
        orphan_grace=0.05,
        checkpoint=checkpoint,
    )


def expire(bench: Bench, worker_id: str) -> None:
    with bench.engine.begin() as conn:
        conn.execute(
            sync_worker.update()
            .where(sync_worker.c.id == worker_id)
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_a_live_peers_reservation_is_left_alone_and_a_dead_ones_adopted(
    bench: Bench,
) -> None:
    """B's resume does not touch A's batch while A's lease runs; once it expired, B
    finishes it, stamps it as its own, and every record lands once."""
    a = WorkerRegistry(bench.engine, CONNECTOR, worker_id="host-a")
    b = WorkerRegistry(bench.engine, CONNECTOR, worker_id="host-b")
    a.register()
    b.register()
    ids = [bench.emulator.ui_add("crm.company", {"TITLE": f"C{n}"}) for n in range(3)]
    with pytest.raises(Crash):
        await drainer_of(bench, a, crash_at="after_reserve").drain_once()

    stats = await drainer_of(bench, b).resume()
    assert stats.resumed == 0 and bench.rows("erp_company") == []
    assert all(r["PROCESS_ID"] for r in bench.queue())  # still A's, still locked

    expire(bench, a.id)
    stats = await drainer_of(bench, b).resume()
    assert stats.resumed == 1 and stats.inserted == 3
    assert [r["b24_id"] for r in bench.rows("erp_company")] == ids
    assert bench.queue() == []
    with bench.engine.connect() as conn:
        assert conn.execute(sa.select(sync_journal.c.worker)).scalars().all() == ["host-b"]
    assert [w.id for w in b.expired()] == ["host-a"]
    b.reap(["host-a"])  # kept a while: outbox claims may still name it
    assert [w.id for w in b.expired()] == ["host-a"]
    with bench.engine.begin() as conn:
        conn.execute(sync_worker.update().values(lease_until=datetime.now(UTC) - 11 * b.lease))
    b.reap(["host-a"])
    assert b.expired() == []


async def test_a_dead_workers_entry_is_adopted_by_one_live_worker_only(bench: Bench) -> None:
    journal = Journal(bench.engine, CONNECTOR, "dead")
    journal.reserve("pid-1", [], [])
    entry = Journal(bench.engine, CONNECTOR, "b").unfinished()[0]

    assert Journal(bench.engine, CONNECTOR, "b").adopt(entry) is True
    assert Journal(bench.engine, CONNECTOR, "c").adopt(entry) is False
    assert Journal(bench.engine, CONNECTOR, "c").claim("pid-2") is True
    assert Journal(bench.engine, CONNECTOR, "b").claim("pid-2") is False


async def test_an_orphan_a_live_peer_journals_during_the_grace_is_not_taken(
    bench: Bench,
) -> None:
    """A peer between its get and its journal write holds locked records the journal
    does not name yet; the grace lets it write them, and B leaves them alone."""
    a = WorkerRegistry(bench.engine, CONNECTOR, worker_id="host-a")
    b = WorkerRegistry(bench.engine, CONNECTOR, worker_id="host-b")
    a.register()
    b.register()
    bench.emulator.ui_add("crm.company", {"TITLE": "In flight"})
    with pytest.raises(Crash):
        await drainer_of(bench, a, crash_at="after_get").drain_once()
    [pid] = {r["PROCESS_ID"] for r in bench.queue()}

    drainer = drainer_of(bench, b)

    def peer_writes_its_journal_meanwhile() -> bool:
        Journal(bench.engine, CONNECTOR, a.id).reserve(pid, [], [])
        return True

    drainer.peers_alive = peer_writes_its_journal_meanwhile
    stats = await drainer.recover_orphans()
    assert stats.resumed == 0 and bench.rows("erp_company") == []

    alone = drainer_of(bench, b)
    expire(bench, a.id)
    stats = await alone.resume()  # A is dead now: its journal entry is B's to finish
    assert stats.resumed == 1 and [r["title"] for r in bench.rows("erp_company")] == ["In flight"]


class DropFirstReserve(httpx.AsyncBaseTransport):
    """Delivers the first reserving ``event.offline.get`` that reserves something to the
    portal, then loses its answer (a read timeout), as a proxy or a flaky network does."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = request.content
        if (
            not self.dropped
            and request.url.path.endswith("/event.offline.get")
            and b"process_id" not in body
        ):
            await response.aread()
            assert response.status_code == 200, response.text
            if response.json()["result"].get("events"):
                self.dropped += 1
                raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_get_answer_is_recovered_in_the_same_cycle(bench: Bench) -> None:
    """The portal reserved a batch whose answer never arrived: the drainer finds it
    through event.offline.list and finishes it at once instead of reporting an empty
    queue and leaving the records locked until a restart."""
    ids = [bench.emulator.ui_add("crm.company", {"TITLE": f"C{n}"}) for n in range(3)]
    transport = DropFirstReserve(httpx.ASGITransport(app=bench.emulator.app()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        client = RestClient(http, f"{BASE}/rest/", connector_id=CONNECTOR, auth=bench.client.auth)
        drainer = Drainer(client, bench.engine, bench.mappings, CONNECTOR)
        stats = await drainer.drain_until_empty()
    assert transport.dropped == 1
    assert stats.resumed == 1 and stats.inserted == 3
    assert [r["b24_id"] for r in bench.rows("erp_company")] == ids
    assert bench.queue() == []


async def test_a_running_worker_recovers_a_lost_get_well_before_its_safety_poll(
    worker_env: WorkerEnv,
) -> None:
    """The safety poll is a minute away; the record still lands within seconds."""
    emulator, engine, plain, served_http = worker_env
    base = str(served_http.base_url).rstrip("/")
    transport = DropFirstReserve(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport, base_url=base) as http:
        client = RestClient(http, f"{base}/rest/", connector_id=CONNECTOR, auth=plain.auth)
        worker = built(client, http, engine, poll_interval=60, listen=False)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.ready.wait(), 15)
        await eventually(lambda: worker.stats.drains >= 1)  # the start-up wake is spent
        emulator.ui_add("crm.company", {"TITLE": "Reserved, answer lost"})
        worker.wake.set()  # what the push would do
        await eventually(lambda: titles(engine) == ["Reserved, answer lost"], limit=20)
        worker.stop()
        await asyncio.wait_for(task, 15)
    assert transport.dropped == 1
    assert emulator.queue_state() == []


@pytest.mark.backends("postgresql")
async def test_on_postgresql_the_listener_holder_wakes_its_peers_through_notify(
    served: tuple[Emulator, ServerThread], db_url: str
) -> None:
    """Two workers, safety polls an hour away: one holds the listener lock and connects
    to Push&Pull; a portal change wakes the other too (LISTEN/NOTIFY), not only it."""
    emulator, server = served
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    mappings = load_mappings(REPO / "mappings")
    sync_erp_schema(engine, mappings)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        client = RestClient(
            http,
            f"{server.base_url}/rest/",
            connector_id=CONNECTOR,
            auth=StaticToken(creds["access_token"]),
        )
        workers = [
            wiring.worker(client, http, engine, mappings, CONNECTOR, poll_interval=3600)
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:
            await eventually(lambda: any(w.listener is not None for w in workers), limit=20)
            holder = next(w for w in workers if w.listener is not None)
            peer = next(w for w in workers if w is not holder)
            await eventually(
                lambda: holder.listener is not None and holder.listener.stats.connects > 0
            )
            await eventually(lambda: peer.stats.drains >= 1)  # its start-up wake is spent
            await asyncio.sleep(1.5)  # the peer's LISTEN connection is up
            wakes = peer.stats.wakes
            emulator.ui_add("crm.company", {"TITLE": "Pushed"})
            await eventually(lambda: titles(engine) == ["Pushed"])
            await eventually(lambda: peer.stats.wakes > wakes, limit=10)
            assert peer.listener is None  # it never connected to Push&Pull itself
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
    engine.dispose()


async def test_a_second_worker_on_sqlite_says_in_one_line_that_sqlite_is_single_worker(
    worker_env: WorkerEnv, caplog: pytest.LogCaptureFixture
) -> None:
    _, engine, client, http = worker_env
    mappings = load_mappings(REPO / "mappings")
    first = wiring.worker(client, http, engine, mappings, CONNECTOR, listen=False)
    await first._register()
    assert "single-worker" not in caplog.text
    second = wiring.worker(client, http, engine, mappings, CONNECTOR, listen=False)
    await second._register()
    [line] = [r.getMessage() for r in caplog.records if "single-worker" in r.getMessage()]
    assert first.registry.id in line and "PostgreSQL" in line


async def test_outbox_claims_of_a_worker_whose_lease_expired_are_free(bench: Bench) -> None:
    """A killed worker on another host held outbox rows: once its lease ran out, a live
    pusher claims them (without waiting for the outbox's own five-minute lease)."""
    with bench.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO erp_company (title) VALUES ('Claimed, then killed')"))
    gone = WorkerRegistry(bench.engine, CONNECTOR, worker_id="elsewhere-1-dead")
    gone.register()
    assert len(OutboxStore(bench.engine, worker=gone.id).claim(10)) == 1
    live = OutboxStore(bench.engine, worker="here-2-live")
    assert live.claim(10) == []  # the holder's lease still runs

    expire(bench, gone.id)
    [record] = live.claim(10)
    assert record.entity == "crm.company"


async def test_a_failed_folded_clear_stops_the_get_and_a_resume_finishes_it(
    bench: Bench,
) -> None:
    """The clear riding with the next get fails: the batch halts (no new reservation, no
    clear of records still to flag), the error surfaces, and a resume clears the batch."""
    for n in range(2):
        bench.emulator.ui_add("crm.company", {"TITLE": f"C{n}"})
    drainer = bench.drainer()
    first = await drainer.drain_once()
    assert first.inserted == 2 and drainer._unsent is not None  # the clear is owed
    bench.emulator.ui_add("crm.company", {"TITLE": "Next"})
    bench.emulator.set_faults(fail_methods={"event.offline.clear": 1})
    with pytest.raises(PortalError):
        await drainer.drain_once()
    queue = bench.queue()
    assert len(queue) == 3
    assert len({r["PROCESS_ID"] for r in queue if r["PROCESS_ID"]}) == 1  # "Next" not taken

    bench.emulator.clear_faults()
    await drainer.resume()
    await drainer.drain_until_empty()
    assert bench.queue() == []
    assert sorted(r["title"] for r in bench.rows("erp_company")) == ["C0", "C1", "Next"]


async def test_only_a_worker_of_this_pid_namespace_is_declared_dead_by_its_pid(
    bench: Bench,
) -> None:
    """Same host name, other PID namespace (a container with host networking): its PID
    means nothing here, so only its lease can end it."""
    from connector.adapters.store.local_process import host_identity

    now = datetime.now(UTC)
    gone_pid = 2**22 + 12345  # above pid_max: no such process
    with bench.engine.begin() as conn:
        for wid, host in (("here", host_identity()), ("container", "vm/pidns-1/boot-x")):
            conn.execute(
                sync_worker.insert().values(
                    id=wid,
                    connector_id=CONNECTOR,
                    host=host,
                    pid=gone_pid,
                    started_at=now,
                    heartbeat_at=now,
                    lease_until=now + timedelta(seconds=30),
                    listener=False,
                )
            )
    me = WorkerRegistry(bench.engine, CONNECTOR, worker_id="me")
    assert me.expire_gone_local() == ["here"]
    assert [w.id for w in me.peers()] == ["container"]
