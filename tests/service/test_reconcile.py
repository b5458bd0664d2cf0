"""Reconcile: the portal's ID set against the ERP's links. Gone records are handled under
the delete policy, missing ones loaded, changed ones re-read with ``since``; bindings
found missing at start-up schedule it by themselves, and a kill during it resumes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from connector.service.backfill import Backfiller
from connector.service.reconcile import Reconciler, note_bindings, pending, run_pending
from tests.service.drain_harness import Bench
from tests.service.test_backfill import InterleavingPortal, company, discard_queue, last_seq
from tests.service.test_backfill_deletes import stamped_behind
from tests.service.test_sync_command import cli, erp_rows, setup_connector
from tests.service.test_worker import served  # noqa: F401  (fixture)


def marked(bench: Bench) -> set[int]:
    return {r["b24_id"] for r in bench.rows("erp_company") if r["b24_deleted_at"] is not None}


def titles(bench: Bench) -> dict[int, str]:
    return {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}


async def loaded(bench: Bench, count: int) -> list[int]:
    """``count`` companies seeded and backfilled, the queue emptied."""
    ids = bench.emulator.seed_crm(companies=count, seed=8)["company"]
    await discard_queue(bench)
    await Backfiller(bench.client, bench.engine, bench.mappings).entity(company(bench))
    return ids


async def unseen(bench: Bench, action: Any) -> Any:
    """Run ``action`` in the portal with its queue events lost, as with no bindings."""
    result = action()
    await discard_queue(bench)
    if bench.engine.dialect.name in ("mysql", "mariadb"):
        await asyncio.sleep(1.05)  # DATETIME seconds: reads start after the links' second
    return result


async def test_gone_records_are_marked_and_missing_ones_loaded_from_id_reads(
    bench: Bench,
) -> None:
    """Three companies deleted and two created with their events lost: one ID request
    finds both kinds; the deleted are marked, the new two are read in full (one more
    request) and land; nothing else changes."""
    ids = await loaded(bench, 300)
    before = titles(bench)
    gone = [ids[0], ids[150], ids[299]]
    for b24_id in gone:
        await unseen(bench, lambda i=b24_id: bench.emulator.ui_delete("crm.company", i))
    born = [
        await unseen(bench, lambda n=n: bench.emulator.ui_add("crm.company", {"TITLE": f"New {n}"}))
        for n in range(2)
    ]
    since = last_seq(bench)
    stats = await Reconciler(bench.client, bench.engine, bench.mappings).entity(company(bench))
    assert marked(bench) == set(gone)
    after = titles(bench)
    assert [after[b] for b in born] == ["New 0", "New 1"]
    assert {k: v for k, v in after.items() if k not in born} == before
    assert (stats.compared, stats.applied.deleted, stats.missing) == (299, 3, 2)
    requests = bench.emulator.requests(since=since)
    assert len(requests) == 3  # the probe, one ID request, one full read of the two
    id_pass = requests[1].params["cmd"]["p0"]
    assert "select[0]=ID" in id_pass and "select[1]" not in id_pass


async def test_since_re_reads_what_an_id_set_cannot_show(bench: Bench) -> None:
    """An update whose event was lost: the ID pass alone leaves it; ``since`` re-reads
    the records changed after that time, and only those."""
    ids = await loaded(bench, 80)
    await asyncio.sleep(1.1)  # the portal keeps DATE_MODIFY to the second
    start = datetime.now(UTC).replace(microsecond=0)
    await unseen(bench, lambda: bench.emulator.ui_update("crm.company", ids[5], {"TITLE": "Moved"}))
    reconciler = Reconciler(bench.client, bench.engine, bench.mappings)
    ids_only = await reconciler.entity(company(bench))
    assert titles(bench)[ids[5]] != "Moved"
    assert ids_only.changed == 0
    with_since = await reconciler.entity(company(bench), since=start)
    assert titles(bench)[ids[5]] == "Moved"
    assert with_since.changed == 1 and with_since.applied.updated == 1


async def test_rebound_events_of_a_synced_entity_schedule_a_reconcile_that_survives_a_kill(
    bench: Bench,
) -> None:
    """Bindings seen at one start and bound again at the next: the entity gets a
    reconcile from the earlier sighting (less a margin), kept until it finishes; an
    entity never synced, or bindings that were in place, schedule nothing."""
    await loaded(bench, 10)
    first = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert note_bindings(bench.engine, bench.mappings, [], now=first) == []
    assert pending(bench.engine) == {}
    events = ["ONCRMCOMPANYADD", "ONCRMCOMPANYUPDATE", "ONCRMDEALADD"]
    scheduled = note_bindings(bench.engine, bench.mappings, events, now=first + timedelta(hours=3))
    assert scheduled == ["crm.company"]  # no deal was ever synced
    [(entity, since)] = pending(bench.engine).items()
    assert entity == "crm.company" and since is not None and since < first
    assert first - since <= timedelta(minutes=30)
    # the next start finds the bindings in place; the reconcile is still owed
    assert note_bindings(bench.engine, bench.mappings, [], now=first + timedelta(hours=4)) == []
    assert set(pending(bench.engine)) == {"crm.company"}
    # found missing again before it ran: the earlier gap start is kept
    later = first + timedelta(hours=5)
    note_bindings(bench.engine, bench.mappings, events, now=later)
    assert pending(bench.engine)["crm.company"] == since
    done = await run_pending(bench.client, bench.engine, bench.mappings, "erp_main")
    assert set(done) == {"crm.company"}
    assert pending(bench.engine) == {}


@pytest.mark.backends("sqlite", "postgresql")  # the CLI end to end; SQL per server elsewhere
def test_after_an_uninstall_and_reinstall_sync_rebinds_loudly_and_mends_the_gap(
    served: tuple[Emulator, ServerThread],  # noqa: F811
    db_url: str,
    tmp_path: Path,
) -> None:
    """The app removed (queue and bindings with it) while the portal changes: after the
    reinstall and `auth set`, `sync --once` says the bindings were missing, re-binds,
    and the ERP ends with the delete, the update and the insert made meanwhile."""
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    assert cli("sync", "--once", cwd=tmp_path, env=env).returncode == 0  # binds
    ids = [emulator.ui_add("crm.company", {"TITLE": f"Firm {n}"}) for n in range(4)]
    assert cli("sync", "--once", cwd=tmp_path, env=env).returncode == 0
    assert len(erp_rows(db_url)) == 4
    emulator.uninstall_app(env["B24_CLIENT_ID"])
    emulator.ui_delete("crm.company", ids[1])
    emulator.ui_update("crm.company", ids[2], {"TITLE": "Renamed while away"})
    born = emulator.ui_add("crm.company", {"TITLE": "Born while away"})
    creds = emulator.install_app(
        env["B24_CLIENT_ID"], scopes=("crm", "pull", "user"), base_url=server.base_url
    )
    stored = cli(
        "auth", "set", cwd=tmp_path, env={**env, "B24_REFRESH_TOKEN": creds["refresh_token"]}
    )
    assert stored.returncode == 0, stored.stderr
    synced = cli("sync", "--once", cwd=tmp_path, env=env)
    assert synced.returncode == 0, synced.stderr
    assert "bindings" in synced.stderr and "missing" in synced.stderr
    assert "reconciling" in synced.stderr
    rows = {r["b24_id"]: r["title"] for r in erp_rows(db_url)}
    assert rows[ids[2]] == "Renamed while away"
    assert rows[born] == "Born while away"
    deleted = json.loads(
        cli("reconcile", "--entity", "company", "--json", cwd=tmp_path, env=env).stdout
    )
    assert deleted[0]["gone"] == 0  # already mended by the sync
    assert marked_in(db_url) == {ids[1]}


def marked_in(db_url: str) -> set[int]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT b24_id FROM erp_company WHERE b24_deleted_at IS NOT NULL")
        ).scalars()
        out = {int(i) for i in found}
    engine.dispose()
    return out


def test_two_workers_noting_bindings_at_once_never_collide(db_url: str) -> None:
    """Workers starting together each note the bindings (the same sync_cursor rows): the
    cursor write is one upsert, so neither fails on the row's key (a select-then-insert
    raised UniqueViolation on PostgreSQL and stopped a worker's start-up)."""
    import threading

    from connector.adapters.store import migrate
    from connector.adapters.store.cursors import write_cursor

    engine = make_engine(db_url)
    migrate.upgrade(engine)
    failures: list[BaseException] = []
    for round_ in range(15):
        barrier = threading.Barrier(2)

        def write(
            value: str, name: str = f"bindings:race-{round_}", barrier: Any = barrier
        ) -> None:
            try:
                barrier.wait()
                with engine.begin() as conn:
                    write_cursor(conn, name, value, finished=True, now=datetime.now(UTC))
            except BaseException as exc:  # collected for the assertion
                failures.append(exc)

        threads = [threading.Thread(target=write, args=(v,)) for v in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.text("SELECT value FROM sync_cursor WHERE name LIKE 'bindings:race-%'"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert failures == []
    assert len(rows) == 15 and set(rows) <= {"a", "b"}


class InterleavingBatches(InterleavingPortal):
    async def batch(self, commands: Any, *, halt: bool = False) -> Any:
        return await self.inner.batch(commands, halt=halt)


async def test_a_newborn_linked_by_a_slow_clock_is_read_back_not_taken_for_gone(
    bench: Bench,
) -> None:
    """A company born and drained during the ID pass, stamped an hour early by a peer
    whose clock runs behind: the tail reads it back by ID and leaves it, and marks the
    company really deleted at the top."""
    ids = await loaded(bench, 120)
    await unseen(bench, lambda: bench.emulator.ui_delete("crm.company", ids[-1]))
    born: list[int] = []

    async def hook(window: int, rows: list[Any]) -> None:
        if window == 2:  # the last page of IDs: no read after it sees the newborn
            born.append(bench.emulator.ui_add("crm.company", {"TITLE": "Born on a slow host"}))
            assert (await bench.drainer().drain_until_empty()).inserted == 1
            stamped_behind(bench, born[0], timedelta(hours=1))

    portal = InterleavingBatches(bench.client, hook)
    stats = await Reconciler(portal, bench.engine, bench.mappings, pages_per_request=1).entity(
        company(bench)
    )
    assert marked(bench) == {ids[-1]}
    assert born[0] not in marked(bench)
    assert stats.applied.deleted == 1
