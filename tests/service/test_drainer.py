"""The drain cycle against the emulator: portal changes reach the ERP tables exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.drain_harness import Bench, Crash


@pytest.fixture
def bench(schema_bench: Bench) -> Bench:
    return schema_bench  # the shared schema: these tests do not build it


def add_company(bench: Bench, title: str, **extra: Any) -> int:
    return bench.emulator.ui_add("crm.company", {"TITLE": title, **extra})


async def test_add_update_delete_in_the_portal_reach_the_erp(bench: Bench) -> None:
    """A UI add lands as a row, an update changes it, a delete marks it deleted."""
    cid = add_company(bench, "Acme", COMMENTS="first")
    stats = await bench.drainer().drain_until_empty()
    assert stats.inserted == 1
    [row] = bench.rows("erp_company")
    assert (row["b24_id"], row["title"], row["comments"]) == (cid, "Acme", "first")

    bench.emulator.ui_update("crm.company", cid, {"TITLE": "Acme Ltd"})
    await bench.drainer().drain_until_empty()
    assert bench.rows("erp_company")[0]["title"] == "Acme Ltd"

    bench.emulator.ui_delete("crm.company", cid)
    await bench.drainer().drain_until_empty()
    assert bench.rows("erp_company")[0]["b24_deleted_at"] is not None
    assert bench.queue() == []


async def test_multifields_round_trip_with_value_ids(bench: Bench) -> None:
    """Phones and e-mails arrive with the portal's value IDs; changing one updates that row."""
    cid = add_company(
        bench,
        "Acme",
        PHONE=[{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}],
        EMAIL=[{"VALUE": "a@acme.test", "VALUE_TYPE": "WORK"}],
    )
    await bench.drainer().drain_until_empty()
    [phone] = _children(bench, "erp_company_phone")
    [portal_phone] = bench.emulator.portal().crm.get("company", cid)["PHONE"]
    assert phone["value"] == "+1 555" and phone["value_type"] == "WORK"
    assert phone["b24_value_id"] == int(portal_phone["ID"])
    bench.emulator.ui_update(
        "crm.company",
        cid,
        {"PHONE": [{"ID": str(phone["b24_value_id"]), "VALUE": "+1 777", "VALUE_TYPE": "MOBILE"}]},
    )
    await bench.drainer().drain_until_empty()
    [changed] = _children(bench, "erp_company_phone")
    assert (changed["b24_value_id"], changed["value"], changed["value_type"]) == (
        phone["b24_value_id"],
        "+1 777",
        "MOBILE",
    )
    assert changed["id"] == phone["id"]


def _children(bench: Bench, table: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    with bench.engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).mappings()
        ]


def _snapshot(bench: Bench) -> dict[str, list[tuple[str, ...]]]:
    import sqlalchemy as sa

    meta = sa.MetaData()
    meta.reflect(bench.engine)
    out = {}
    skip = {"sync_journal"}  # the journal records the deliveries themselves
    with bench.engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name not in skip:
                out[name] = sorted(tuple(map(repr, r)) for r in conn.execute(sa.select(table)))
    return out


@pytest.mark.parametrize(
    "step", ["after_get", "after_reserve", "mid_apply", "after_commit", "after_clear"]
)
async def test_a_crash_at_any_step_loses_nothing_and_applies_nothing_twice(
    bench: Bench, step: str
) -> None:
    """Die at a step of the cycle; a fresh drainer resumes and ends in the crash-free state."""
    ids = [add_company(bench, f"Company {n}") for n in range(3)]
    with pytest.raises(Crash):
        await bench.drainer(crash_at=step).drain_until_empty()
    fresh = bench.drainer()
    await fresh.resume()
    await fresh.drain_until_empty()
    rows = bench.rows("erp_company")
    assert [r["b24_id"] for r in rows] == ids
    assert [r["title"] for r in rows] == [f"Company {n}" for n in range(3)]
    assert bench.queue() == []
    with bench.engine.connect() as conn:
        import sqlalchemy as sa

        states = conn.execute(sa.text("SELECT state FROM sync_journal")).scalars().all()
    assert set(states) == {"cleared"}


async def test_the_same_batch_delivered_twice_leaves_the_state_identical(bench: Bench) -> None:
    """A crash after the commit re-delivers the batch; the database is byte-identical after."""
    cid = add_company(bench, "Acme", PHONE=[{"VALUE": "+1", "VALUE_TYPE": "WORK"}])
    with pytest.raises(Crash):
        await bench.drainer(crash_at="after_commit").drain_until_empty()
    first = _snapshot(bench)
    # the records are still locked: re-read and re-apply them under the same process_id
    entry = bench.drainer().journal.unfinished()[0]
    stats = await bench.drainer()._resume_reserved(entry.process_id)
    assert stats.unchanged == 1
    assert _snapshot(bench) == first
    assert bench.rows("erp_company")[0]["b24_id"] == cid


async def test_a_change_during_processing_is_not_lost(bench: Bench) -> None:
    """An edit after the batch was reserved makes a new queue record, drained next time."""
    cid = add_company(bench, "v1")
    drainer = bench.drainer(crash_at="after_reserve")
    with pytest.raises(Crash):
        await drainer.drain_once()
    bench.emulator.ui_update("crm.company", cid, {"TITLE": "v2"})
    fresh = bench.drainer()
    await fresh.resume()
    await fresh.drain_until_empty()
    assert bench.rows("erp_company")[0]["title"] == "v2"
    assert bench.queue() == []


async def test_a_bad_value_is_kept_and_flagged_and_the_rest_flows(bench: Bench) -> None:
    """A title too long for its column becomes a record error plus event.offline.error;
    the other company in the batch is applied."""
    good = add_company(bench, "Fine")
    bad = add_company(bench, "x" * 300)
    stats = await bench.drainer().drain_until_empty()
    assert (stats.inserted, stats.bad) == (1, 1)
    assert [r["b24_id"] for r in bench.rows("erp_company")] == [good]
    import sqlalchemy as sa

    with bench.engine.connect() as conn:
        err = conn.execute(
            sa.text("SELECT entity, b24_id, field, message FROM sync_record_error")
        ).one()
    assert err[:3] == ("crm.company", bad, "TITLE")
    assert f"crm.company id={bad} field=TITLE" in err[3]
    held = [r for r in bench.queue() if r["ERROR"] == "1"]
    assert len(held) == 1 and held[0]["EVENT_DATA"]["FIELDS"]["ID"] == bad


async def test_steady_state_costs_at_most_0_06_calls_per_record(bench: Bench) -> None:
    """get + one batched fetch + clear per 50 records: ≤ 0.06 REST calls per synced record."""
    for n in range(200):
        add_company(bench, f"Company {n}")
    before = bench.rest_calls()
    stats = await bench.drainer().drain_until_empty()
    calls = bench.rest_calls() - before - 1  # the final empty get is not steady state
    assert stats.records == 200
    assert calls / stats.records <= 0.06, (calls, stats.records)


async def test_adopting_orphans_reads_only_locked_records(bench: Bench) -> None:
    """After a crash between get and the journal write, resume finds the orphaned lock with
    one event.offline.list call even when a backlog of 120 free records waits."""
    for n in range(3):
        add_company(bench, f"Locked {n}")
    with pytest.raises(Crash):
        await bench.drainer(crash_at="after_get").drain_once()
    for n in range(120):
        add_company(bench, f"Waiting {n}")
    before = len(bench.emulator.requests("event.offline.list"))
    stats = await bench.drainer().resume()
    assert len(bench.emulator.requests("event.offline.list")) - before == 1
    assert stats.resumed == 1 and stats.inserted == 3


async def test_the_portal_removing_the_last_phone_removes_it_in_the_erp(bench: Bench) -> None:
    """An empty multi-field is absent from the portal's answer; that is a removal."""
    cid = add_company(bench, "Acme", PHONE=[{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}])
    await bench.drainer().drain_until_empty()
    [phone] = _children(bench, "erp_company_phone")
    bench.emulator.ui_update(
        "crm.company", cid, {"PHONE": [{"ID": str(phone["b24_value_id"]), "VALUE": ""}]}
    )
    await bench.drainer().drain_until_empty()
    assert _children(bench, "erp_company_phone") == []


async def test_with_the_database_down_nothing_is_reserved_in_the_portal(bench: Bench) -> None:
    """The store is asked before event.offline.get: a dead database fails the cycle with
    every queue record still free, instead of stranding a reservation."""
    import sqlalchemy as sa

    from connector.adapters.store.database import make_engine
    from connector.service.drainer import Drainer
    from tests.service.drain_harness import CONNECTOR

    add_company(bench, "Waits")
    dead = make_engine("sqlite:////nonexistent-dir-b24/connector.db")
    drainer = Drainer(bench.client, dead, bench.mappings, CONNECTOR)
    with pytest.raises(sa.exc.OperationalError):
        await drainer.drain_once()
    assert [r["PROCESS_ID"] for r in bench.queue()] == [""]
    dead.dispose()
