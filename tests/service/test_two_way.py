"""Both directions at once: the drain meets the outbox, disjoint edits merge, echoes counted."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core.mapping_model import ConflictPolicy, MappingSet
from connector.service.drainer import DrainStats
from connector.service.pusher import Pusher, PushStats
from tests.service.drain_harness import CONNECTOR, Bench, make_bench


@dataclasses.dataclass
class TwoWay:
    bench: Bench
    erp: sa.Engine
    mappings: MappingSet

    async def drain(self) -> DrainStats:
        b = self.bench
        from connector.service.drainer import Drainer

        return await Drainer(b.client, b.engine, self.mappings, CONNECTOR).drain_until_empty()

    async def push(self) -> PushStats:
        b = self.bench
        return await Pusher(b.client, b.engine, self.mappings, CONNECTOR).push_until_empty()

    def sql(self, statement: str, **params: Any) -> None:
        with self.erp.begin() as conn:
            conn.execute(sa.text(statement), params)

    def erp_row(self, b24_id: int) -> dict[str, Any]:
        with self.erp.connect() as conn:
            row = conn.execute(
                sa.text("SELECT * FROM erp_company WHERE b24_id = :b"), {"b": b24_id}
            ).mappings()
            return dict(row.one())

    def portal(self, b24_id: int) -> dict[str, Any]:
        return self.bench.emulator.portal().crm.get("company", b24_id)

    def count(self, query: str) -> int:
        with self.erp.connect() as conn:
            return int(conn.execute(sa.text(query)).scalar_one())


async def _rig(url: str, policy: ConflictPolicy | None = None) -> TwoWay:
    bench = await make_bench(url)
    mappings = bench.mappings
    if policy is not None:
        company = mappings.entities["crm.company"]
        fields = tuple(
            dataclasses.replace(f, conflict=policy) if f.portal == "TITLE" else f
            for f in company.fields
        )
        changed = dataclasses.replace(company, fields=fields)
        mappings = MappingSet({**mappings.entities, "crm.company": changed})
    return TwoWay(bench, sa.create_engine(url), mappings)


@pytest.fixture
async def two(schema_db_url: str) -> AsyncIterator[TwoWay]:
    rig = await _rig(schema_db_url)
    yield rig
    rig.erp.dispose()
    await rig.bench.http.aclose()
    rig.bench.engine.dispose()


async def _synced_company(two: TwoWay, title: str = "Acme") -> int:
    cid = two.bench.emulator.ui_add("crm.company", {"TITLE": title, "COMMENTS": "c0"})
    await two.drain()
    return cid


@pytest.mark.parametrize("order", ["drain_first", "push_first"])
async def test_disjoint_edits_on_both_sides_merge_both_ways(two: TwoWay, order: str) -> None:
    """The portal changes TITLE while the ERP changes COMMENTS: whichever direction runs
    first, both sides end with both edits, and no conflict is recorded."""
    cid = await _synced_company(two)
    two.sql("UPDATE erp_company SET comments = 'from the ERP' WHERE b24_id = :b", b=cid)
    two.bench.emulator.ui_update("crm.company", cid, {"TITLE": "From the portal"})
    steps = [two.drain, two.push] if order == "drain_first" else [two.push, two.drain]
    for step in steps:
        await step()
    row, portal = two.erp_row(cid), two.portal(cid)
    assert (row["title"], row["comments"]) == ("From the portal", "from the ERP")
    assert (portal["TITLE"], portal["COMMENTS"]) == ("From the portal", "from the ERP")
    assert two.count("SELECT count(*) FROM sync_conflict") == 0
    assert two.bench.queue() == []
    assert two.count("SELECT count(*) FROM sync_outbox WHERE status != 'done'") == 0


@pytest.mark.parametrize("order", ["drain_first", "push_first"])
async def test_the_same_field_on_both_sides_is_one_conflict_and_holds_only_that_record(
    two: TwoWay, order: str
) -> None:
    """Under manual, TITLE changed on both sides: one sync_conflict row, neither value
    overwritten, the ERP edit's outbox rows held — and another record syncs meanwhile."""
    cid = await _synced_company(two)
    other = await _synced_company(two, "Other")
    two.sql("UPDATE erp_company SET title = 'ERP title' WHERE b24_id = :b", b=cid)
    two.bench.emulator.ui_update("crm.company", cid, {"TITLE": "Portal title"})
    two.sql("UPDATE erp_company SET comments = 'flows' WHERE b24_id = :b", b=other)
    two.bench.emulator.ui_update("crm.company", other, {"TITLE": "Other renamed"})
    steps = [two.drain, two.push] if order == "drain_first" else [two.push, two.drain]
    for step in steps:
        await step()
    assert two.erp_row(cid)["title"] == "ERP title"
    assert two.portal(cid)["TITLE"] == "Portal title"
    assert two.count("SELECT count(*) FROM sync_conflict WHERE status = 'open'") == 1
    assert two.count("SELECT count(*) FROM sync_outbox WHERE status = 'held'") >= 1
    assert two.count("SELECT count(*) FROM sync_outbox WHERE status = 'pending'") == 0
    assert (two.portal(other)["COMMENTS"], two.erp_row(other)["title"]) == (
        "flows",
        "Other renamed",
    )


@pytest.mark.parametrize(
    ("policy", "winner"),
    [(ConflictPolicy.ERP_WINS, "ERP title"), (ConflictPolicy.PORTAL_WINS, "Portal title")],
)
async def test_the_same_field_under_a_policy_ends_with_its_winner_on_both_sides(
    schema_db_url: str, policy: ConflictPolicy, winner: str
) -> None:
    """erp_wins pushes the ERP's value over the portal's; portal_wins writes the portal's
    value into the ERP; either way both sides agree and nothing is held."""
    two = await _rig(schema_db_url, policy)
    try:
        cid = await _synced_company(two)
        two.sql("UPDATE erp_company SET title = 'ERP title' WHERE b24_id = :b", b=cid)
        two.bench.emulator.ui_update("crm.company", cid, {"TITLE": "Portal title"})
        await two.push()
        await two.drain()
        await two.push()
        assert (two.erp_row(cid)["title"], two.portal(cid)["TITLE"]) == (winner, winner)
        assert two.count("SELECT count(*) FROM sync_conflict") == 0
        assert two.bench.queue() == []
    finally:
        two.erp.dispose()
        await two.bench.http.aclose()
        two.bench.engine.dispose()


async def test_a_thousand_mixed_changes_cause_no_echo_either_way(two: TwoWay) -> None:
    """1,000 changes (500 UI edits in the portal, 500 plain-SQL edits in the ERP, the same
    records, different fields): the queue delivers exactly the UI's changes (none caused by
    our portal writes), the outbox holds exactly the ERP's changes (none caused by our ERP
    writes), and every record agrees on both sides afterwards."""
    rng = random.Random(7)
    two.bench.emulator.set_limits(enabled=False)  # counts, not timing: no waiting on the bucket
    ids = [two.bench.emulator.ui_add("crm.company", {"TITLE": f"P{n}"}) for n in range(25)]
    for n in range(25):
        two.sql("INSERT INTO erp_company (title) VALUES (:t)", t=f"E{n}")
    first = await two.drain()
    await two.push()
    with two.erp.connect() as conn:
        ids += [
            int(v)
            for v in conn.execute(
                sa.text("SELECT b24_id FROM erp_company WHERE title LIKE 'E%'")
            ).scalars()
        ]
    assert first.records == 25 and len(ids) == 50
    outbox_before = two.count("SELECT count(*) FROM sync_outbox")
    ui_changes = erp_changes = drained = 0
    for step in range(20):
        portal_side = rng.sample(ids, 25)
        erp_side = rng.sample(ids, 25)
        for b24_id in portal_side:
            two.bench.emulator.ui_update("crm.company", b24_id, {"TITLE": f"t{step}-{b24_id}"})
            ui_changes += 1
        for b24_id in erp_side:
            two.sql(
                "UPDATE erp_company SET comments = :c WHERE b24_id = :b",
                c=f"c{step}-{b24_id}",
                b=b24_id,
            )
            erp_changes += 1
        drained += (await two.drain()).records
        await two.push()
    assert ui_changes + erp_changes == 1000
    assert drained == ui_changes  # no queue record from our own writes
    assert two.count("SELECT count(*) FROM sync_outbox") - outbox_before == erp_changes
    assert two.count("SELECT count(*) FROM sync_outbox WHERE status != 'done'") == 0
    assert two.count("SELECT count(*) FROM sync_conflict") == 0
    assert two.bench.queue() == []
    for b24_id in ids:
        row, portal = two.erp_row(b24_id), two.portal(b24_id)
        assert (row["title"], row["comments"] or "") == (portal["TITLE"], portal["COMMENTS"] or "")


async def test_an_erp_edit_no_trigger_saw_is_pushed_once_the_drain_finds_it(two: TwoWay) -> None:
    """An edit made while the capture triggers were missing leaves no outbox row; the next
    portal event for that record shows the merge an unsent ERP value, the drain queues it,
    and the push sends it — the edit is late, never lost."""
    from connector.adapters.store.outbox_triggers import existing_triggers

    cid = await _synced_company(two)
    with two.erp.begin() as conn:
        for name, table in existing_triggers(conn).items():
            if table == "erp_company":
                suffix = " ON erp_company" if conn.dialect.name == "postgresql" else ""
                conn.exec_driver_sql(f"DROP TRIGGER {name}{suffix}")
    try:
        two.sql("UPDATE erp_company SET comments = 'unseen' WHERE b24_id = :b", b=cid)
        assert two.count("SELECT count(*) FROM sync_outbox WHERE status = 'pending'") == 0
        two.bench.emulator.ui_update("crm.company", cid, {"TITLE": "Renamed"})
        await two.drain()
        assert two.count("SELECT count(*) FROM sync_outbox WHERE status = 'pending'") == 1
        await two.push()
        assert (two.portal(cid)["TITLE"], two.portal(cid)["COMMENTS"]) == ("Renamed", "unseen")
        assert two.erp_row(cid)["title"] == "Renamed"
    finally:  # the schema database is shared by the tests that follow: triggers back
        from connector.adapters.store.erp_schema import sync_erp_schema

        sync_erp_schema(two.bench.engine, two.bench.mappings)


@pytest.mark.parametrize("order", ["drain_first", "push_first"])
async def test_phones_changed_on_both_sides_merge_value_by_value(two: TwoWay, order: str) -> None:
    """The portal changes one phone while the ERP adds another and deletes a third: no
    conflict; both sides end with the changed phone, the added one and not the deleted."""
    cid = two.bench.emulator.ui_add(
        "crm.company",
        {
            "TITLE": "Acme",
            "PHONE": [
                {"VALUE": "+1 100", "VALUE_TYPE": "WORK"},
                {"VALUE": "+1 200", "VALUE_TYPE": "WORK"},
            ],
        },
    )
    await two.drain()
    ids = {p["VALUE"]: p["ID"] for p in two.portal(cid)["PHONE"]}
    two.bench.emulator.ui_update(
        "crm.company", cid, {"PHONE": [{"ID": ids["+1 100"], "VALUE": "+1 111"}]}
    )
    two.sql("DELETE FROM erp_company_phone WHERE value = '+1 200'")
    two.sql(
        "INSERT INTO erp_company_phone (owner_id, value, value_type) "
        "SELECT id, '+1 300', 'MOBILE' FROM erp_company WHERE b24_id = :b",
        b=cid,
    )
    steps = [two.drain, two.push] if order == "drain_first" else [two.push, two.drain]
    for step in steps:
        await step()
    await two.push()
    portal = sorted(p["VALUE"] for p in two.portal(cid)["PHONE"])
    with two.erp.connect() as conn:
        erp = sorted(conn.execute(sa.text("SELECT value FROM erp_company_phone")).scalars())
    assert portal == erp == ["+1 111", "+1 300"]
    assert two.count("SELECT count(*) FROM sync_conflict") == 0
    with two.erp.connect() as conn:
        unset = conn.execute(
            sa.text("SELECT count(*) FROM erp_company_phone WHERE b24_value_id IS NULL")
        ).scalar_one()
    assert unset == 0
    assert two.bench.queue() == []


async def test_the_same_phone_changed_on_both_sides_is_a_conflict(two: TwoWay) -> None:
    """One value changed to different things on both sides: that is for the operator."""
    cid = two.bench.emulator.ui_add(
        "crm.company", {"TITLE": "Acme", "PHONE": [{"VALUE": "+1 100", "VALUE_TYPE": "WORK"}]}
    )
    await two.drain()
    [phone] = two.portal(cid)["PHONE"]
    two.bench.emulator.ui_update(
        "crm.company", cid, {"PHONE": [{"ID": phone["ID"], "VALUE": "+1 P"}]}
    )
    two.sql("UPDATE erp_company_phone SET value = '+1 E'")
    await two.drain()
    assert two.count("SELECT count(*) FROM sync_conflict WHERE status = 'open'") == 1
