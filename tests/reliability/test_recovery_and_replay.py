"""Crashes during recovery itself, and replay: every queue record delivered twice, every
outbox row pushed twice — the state is that of a single run, with no extra portal write."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from connector.service.drainer import Drainer
from connector.service.pusher import Pusher
from tests.service.drain_harness import CONNECTOR, Bench, Crash, make_bench
from tests.service.test_pusher import Rig


@pytest.fixture
async def rig(schema_db_url: str) -> AsyncIterator[Rig]:
    bench = await make_bench(schema_db_url)
    erp = sa.create_engine(schema_db_url)
    yield Rig(bench, erp)
    erp.dispose()
    await bench.http.aclose()
    bench.engine.dispose()


def drainer(bench: Bench, crash_at: str | None = None) -> Drainer:
    return bench.drainer(crash_at)


def snapshot(bench: Bench) -> dict[str, list[tuple[str, ...]]]:
    """The ERP tables and the links, without the times the connector stamps."""
    meta = sa.MetaData()
    meta.reflect(bench.engine)
    out: dict[str, list[tuple[str, ...]]] = {}
    with bench.engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name.startswith("erp_") or name == "sync_link":
                cols = [c for c in table.columns if c.name not in ("updated_at",)]
                out[name] = sorted(tuple(map(repr, r)) for r in conn.execute(sa.select(*cols)))
    return out


FIRST = ["after_reserve", "mid_apply", "after_commit"]
DURING = ["after_get", "mid_apply", "after_commit", "after_clear"]


@pytest.mark.parametrize("during", DURING)
@pytest.mark.parametrize("first", FIRST)
async def test_a_crash_during_recovery_loses_nothing(rig: Rig, first: str, during: str) -> None:
    """Killed mid-cycle, then killed again while resuming that cycle: a third start
    finishes it, every record is in the ERP once, and the queue is empty. (A resume that
    re-read with clear=1 would delete the records before its commit and lose them here.)"""
    b = rig.bench
    ids = [b.emulator.ui_add("crm.company", {"TITLE": f"Firm {n}"}) for n in range(3)]
    with pytest.raises(Crash):
        await drainer(b, first).drain_until_empty()
    second = drainer(b, during)
    try:
        await second.resume()
        await second.drain_until_empty()
    except Crash:
        pass
    third = drainer(b)
    await third.resume()
    await third.drain_until_empty()
    rows = b.rows("erp_company")
    assert [r["b24_id"] for r in rows] == ids
    assert [r["title"] for r in rows] == [f"Firm {n}" for n in range(3)]
    assert b.queue() == []


def requeue_everything_drained(bench: Bench) -> int:
    """Put every record the journal saw back into the queue, as the portal gave it."""
    [client_id] = list(bench.emulator.oauth.apps)
    with bench.engine.connect() as conn:
        batches = conn.execute(
            sa.text("SELECT events FROM sync_journal ORDER BY created_at")
        ).scalars()
        events: list[dict[str, Any]] = []
        for batch in batches:
            events += json.loads(batch) if isinstance(batch, str) else batch
    for event in events:
        bench.emulator.queue_raw(client_id, CONNECTOR, event["EVENT_NAME"], event["EVENT_DATA"])
    return len(events)


async def test_every_queue_record_delivered_twice_changes_nothing(rig: Rig) -> None:
    """Adds, updates with phones, a delete: drained once, then each record delivered
    again: the ERP and the links are as after the first drain, and no portal write is made
    either time."""
    b = rig.bench
    ids = [
        b.emulator.ui_add(
            "crm.company",
            {"TITLE": f"Firm {n}", "PHONE": [{"VALUE": f"+1{n}", "VALUE_TYPE": "WORK"}]},
        )
        for n in range(4)
    ]
    b.emulator.ui_update("crm.company", ids[1], {"TITLE": "Renamed", "COMMENTS": "x"})
    b.emulator.ui_delete("crm.company", ids[2])
    await drainer(b).drain_until_empty()
    once = snapshot(b)
    assert requeue_everything_drained(b) >= 4
    again = await drainer(b).drain_until_empty()
    assert again.records >= 4 and again.inserted == again.updated == 0
    assert snapshot(b) == once
    assert rig.writes() == []
    assert b.queue() == []


async def test_every_outbox_row_pushed_twice_writes_the_portal_once(rig: Rig) -> None:
    """ERP inserts, updates and a delete pushed; then every outbox row made pending again
    and pushed: no second portal write, the same state on both sides."""
    rig.sql(
        "INSERT INTO erp_company (title) VALUES ('A')",
        "INSERT INTO erp_company (title) VALUES ('B')",
        "INSERT INTO erp_company (title) VALUES ('C')",
    )
    pusher = Pusher(rig.bench.client, rig.bench.engine, rig.bench.mappings, CONNECTOR)
    await pusher.push_until_empty()
    rig.sql("UPDATE erp_company SET comments = 'note' WHERE title = 'A'")
    rig.sql("UPDATE erp_company SET title = 'B2' WHERE title = 'B'")
    await pusher.push_until_empty()
    writes = len(rig.writes())
    assert writes == 5
    once = snapshot(rig.bench)
    crm = rig.bench.emulator.portal().crm
    portal_once = [crm.get("company", i) for i in crm.ids("company")]
    rig.sql(
        "UPDATE sync_outbox SET status = 'pending', done_at = NULL, locked_by = NULL, "
        "locked_at = NULL, note = NULL"
    )
    replayed = await pusher.push_until_empty()
    assert replayed.records >= 3
    assert len(rig.writes()) == writes  # nothing sent again
    assert snapshot(rig.bench) == once
    assert [crm.get("company", i) for i in crm.ids("company")] == portal_once


async def test_a_portal_edit_of_our_unconfirmed_add_makes_no_second_erp_row(rig: Rig) -> None:
    """Found by kill -9 under two-way load: the push's add reached the portal, the kill
    came before the local commit, and a portal user edited the new record. The drain
    must not insert a second ERP row for it (the retried push then failed for good on
    the unique b24_id): it leaves the record to the push, which links the original row
    and brings the edit."""
    from tests.service.test_pusher import Crash as PushCrash
    from tests.service.test_pusher import _crashing

    b = rig.bench
    rig.sql("INSERT INTO erp_company (title) VALUES ('From ERP')")
    with pytest.raises(PushCrash):
        await _crashing(rig, "after_write").push_until_empty()
    crm = b.emulator.portal().crm
    [made] = list(crm.ids("company"))
    b.emulator.ui_update("crm.company", made, {"COMMENTS": "edited in the portal"})
    await drainer(b).drain_until_empty()
    assert [r["b24_id"] for r in b.rows("erp_company")] == [None]  # no second row
    await _crashing(rig, "never").push_until_empty()
    [row] = b.rows("erp_company")
    assert (row["b24_id"], row["title"], row["comments"]) == (
        made,
        "From ERP",
        "edited in the portal",
    )
    assert b.queue() == []


@pytest.mark.parametrize("reader", ["backfill", "reconcile"])
async def test_a_backfill_or_reconcile_leaves_our_unconfirmed_add_to_the_push(
    rig: Rig, reader: str
) -> None:
    """The same lost commit, met by a backfill window or a reconcile instead of a drain:
    no second ERP row; the push's retry links the original one."""
    from connector.service.backfill import Backfiller
    from connector.service.reconcile import Reconciler
    from tests.service.test_pusher import Crash as PushCrash
    from tests.service.test_pusher import _crashing

    b = rig.bench
    rig.sql("INSERT INTO erp_company (title) VALUES ('From ERP')")
    with pytest.raises(PushCrash):
        await _crashing(rig, "after_write").push_until_empty()
    company = b.mappings.entities["crm.company"]
    if reader == "backfill":
        await Backfiller(b.client, b.engine, b.mappings, connector_id=CONNECTOR).entity(
            company, restart=True
        )
    else:
        await Reconciler(b.client, b.engine, b.mappings, connector_id=CONNECTOR).entity(company)
    assert [r["b24_id"] for r in b.rows("erp_company")] == [None]
    await _crashing(rig, "never").push_until_empty()
    [made] = list(b.emulator.portal().crm.ids("company"))
    assert [r["b24_id"] for r in b.rows("erp_company")] == [made]
