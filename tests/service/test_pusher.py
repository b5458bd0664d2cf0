"""ERP → portal against the emulator: plain-SQL ERP edits reach the portal, once, echo-free."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.outbox import OutboxStore
from connector.core.mapping_model import DeletePolicy, MappingSet
from connector.service.pusher import Pusher
from tests.service.drain_harness import CONNECTOR, Bench, make_bench


@dataclasses.dataclass
class Rig:
    bench: Bench
    erp: sa.Engine  # the ERP's own connection: plain SQL, not the connector's engine

    def pusher(self, mappings: MappingSet | None = None) -> Pusher:
        b = self.bench
        return Pusher(b.client, b.engine, mappings or b.mappings, CONNECTOR)

    def sql(self, *statements: str, **params: Any) -> None:
        with self.erp.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)

    def one(self, query: str, **params: Any) -> Any:
        with self.erp.connect() as conn:
            return conn.execute(sa.text(query), params).scalar_one()

    def portal(self, b24_id: int, entity: str = "company") -> dict[str, Any]:
        return self.bench.emulator.portal().crm.get(entity, b24_id)

    def writes(self) -> list[dict[str, Any]]:
        """Every CRM write the connector sent (batch sub-calls included)."""
        out = []
        for entry in self.bench.emulator.requests():
            calls = entry.sub_calls if entry.method == "batch" else [vars(entry)]
            for call in calls:
                method = str(call.get("method", ""))
                if method.startswith("crm.") and method.rsplit(".", 1)[1] in (
                    "add",
                    "update",
                    "delete",
                ):
                    out.append(call)
        return out

    def outbox(self, status: str) -> list[dict[str, Any]]:
        return OutboxStore(self.bench.engine).rows(statuses=[status])


@pytest.fixture
async def rig(schema_db_url: str) -> AsyncIterator[Rig]:
    bench = await make_bench(schema_db_url)
    erp = sa.create_engine(schema_db_url)
    yield Rig(bench, erp)
    erp.dispose()
    await bench.http.aclose()
    bench.engine.dispose()


def _phone(key: str, value: str, value_type: str) -> str:
    return (
        "INSERT INTO erp_company_phone (owner_id, value, value_type) "
        f"VALUES ({key}, '{value}', '{value_type}')"
    )


def _new_company(rig: Rig, title: str, **extra: str) -> str:
    cols = ", ".join(["title", *extra])
    marks = ", ".join([":title", *(f":{k}" for k in extra)])
    rig.sql(f"INSERT INTO erp_company ({cols}) VALUES ({marks})", title=title, **extra)
    return str(rig.one("SELECT id FROM erp_company WHERE title = :t", t=title))


async def test_an_erp_insert_reaches_the_portal_and_its_id_comes_back(rig: Rig) -> None:
    """A new ERP row becomes a portal company carrying the ERP key in ORIGIN_ID; b24_id,
    sync_link and the phone's value ID are written back; the portal queues no echo."""
    key = _new_company(rig, "ERP Co", comments="from the ERP", revenue="12.5")
    rig.sql(_phone(key, "+1 555", "WORK"))
    stats = await rig.pusher().push_until_empty()
    assert (stats.records, stats.added, stats.failed) == (1, 1, 0)
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    portal = rig.portal(b24_id)
    assert (portal["TITLE"], portal["COMMENTS"], portal["REVENUE"]) == (
        "ERP Co",
        "from the ERP",
        "12.50",
    )
    assert (portal["ORIGINATOR_ID"], portal["ORIGIN_ID"]) == (CONNECTOR, key)
    [phone] = portal["PHONE"]
    assert rig.one("SELECT b24_value_id FROM erp_company_phone") == int(phone["ID"])
    assert rig.one("SELECT erp_key FROM sync_link WHERE b24_id = :b", b=b24_id) == key
    assert rig.bench.queue() == []
    assert rig.outbox("pending") == []


async def test_an_erp_update_sends_only_the_fields_the_erp_moved(rig: Rig) -> None:
    """After the add, changing COMMENTS sends COMMENTS alone — not the whole row."""
    key = _new_company(rig, "Acme", comments="one")
    await rig.pusher().push_until_empty()
    rig.sql("UPDATE erp_company SET comments = 'two' WHERE id = :k", k=key)
    before = len(rig.writes())
    stats = await rig.pusher().push_until_empty()
    assert stats.updated == 1
    [update] = rig.writes()[before:]
    assert update["method"] == "crm.company.update"
    assert set(update["params"]["fields"]) == {"COMMENTS"}
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    assert rig.portal(b24_id)["COMMENTS"] == "two"


async def test_a_change_back_to_the_agreed_value_costs_no_rest_call(rig: Rig) -> None:
    """Edit and undo before the push: the outbox rows close without any request."""
    key = _new_company(rig, "Acme")
    await rig.pusher().push_until_empty()
    rig.sql(
        "UPDATE erp_company SET title = 'Other' WHERE id = :k",
        "UPDATE erp_company SET title = 'Acme' WHERE id = :k",
        k=key,
    )
    sent = rig.bench.rest_calls()
    stats = await rig.pusher().push_until_empty()
    assert (stats.records, stats.unchanged) == (1, 1)
    assert rig.bench.rest_calls() == sent
    assert rig.outbox("pending") == []


async def test_fifty_rapid_updates_make_one_portal_write_with_the_last_value(rig: Rig) -> None:
    """Coalescing: every pending row of a record goes out as one write."""
    key = _new_company(rig, "Acme")
    await rig.pusher().push_until_empty()
    for n in range(50):
        rig.sql("UPDATE erp_company SET comments = :c WHERE id = :k", c=f"v{n}", k=key)
    before = len(rig.writes())
    await rig.pusher().push_until_empty()
    assert len(rig.writes()) - before <= 2
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    assert rig.portal(b24_id)["COMMENTS"] == "v49"


async def test_multifield_values_change_and_go_by_their_value_ids(rig: Rig) -> None:
    """A changed phone keeps its portal ID, a removed one is deleted by ID, a new one is
    added and its new ID is written back; nothing is duplicated."""
    key = _new_company(rig, "Acme")
    rig.sql(
        _phone(key, "+1 1", "WORK"),
        _phone(key, "+1 2", "HOME"),
    )
    await rig.pusher().push_until_empty()
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    ids = {p["VALUE"]: p["ID"] for p in rig.portal(b24_id)["PHONE"]}
    rig.sql(
        "UPDATE erp_company_phone SET value = '+1 11' WHERE value = '+1 1'",
        "DELETE FROM erp_company_phone WHERE value = '+1 2'",
        _phone(key, "+1 3", "MOBILE"),
    )
    await rig.pusher().push_until_empty()
    phones = {p["VALUE"]: p for p in rig.portal(b24_id)["PHONE"]}
    assert set(phones) == {"+1 11", "+1 3"}
    assert phones["+1 11"]["ID"] == ids["+1 1"]
    new_id = rig.one("SELECT b24_value_id FROM erp_company_phone WHERE value = '+1 3'")
    assert new_id == int(phones["+1 3"]["ID"])
    assert rig.bench.queue() == []


async def test_an_erp_delete_follows_the_delete_policy(rig: Rig) -> None:
    """delete_policy delete removes the portal record; the shipped default (mark) keeps it
    and says so in the outbox row's note."""
    kept = _new_company(rig, "Kept")
    gone = _new_company(rig, "Gone")
    await rig.pusher().push_until_empty()
    kept_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=kept)
    gone_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=gone)
    rig.sql("DELETE FROM erp_company WHERE id = :k", k=kept)
    await rig.pusher().push_until_empty()
    assert rig.portal(kept_id)["TITLE"] == "Kept"
    assert "kept in the portal" in OutboxStore(rig.bench.engine).rows(statuses=["done"])[-1]["note"]

    company = rig.bench.mappings.entities["crm.company"]
    deleting = MappingSet(
        {
            **rig.bench.mappings.entities,
            "crm.company": dataclasses.replace(company, delete_policy=DeletePolicy.DELETE),
        }
    )
    rig.sql("DELETE FROM erp_company WHERE id = :k", k=gone)
    stats = await rig.pusher(deleting).push_until_empty()
    assert stats.deleted == 1
    assert not rig.bench.emulator.portal().crm.exists("company", gone_id)
    assert rig.bench.queue() == []


async def test_a_refused_value_fails_its_row_and_the_rest_flows(rig: Rig) -> None:
    """The portal refuses a bad e-mail: that record's row is failed with the portal's
    message naming record and field; the other record goes through; after the ERP fixes
    the value, outbox retry pushes it and the refusal is closed."""
    bad = _new_company(rig, "Bad mail")
    rig.sql(f"INSERT INTO erp_company_email (owner_id, value) VALUES ({bad}, 'not-an-email')")
    good = _new_company(rig, "Fine")
    stats = await rig.pusher().push_until_empty()
    assert (stats.added, stats.failed) == (1, 1)
    assert rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=good) is not None
    [failed] = {r["erp_key"]: r for r in rig.outbox("failed")}.values()
    assert failed["erp_key"] == bad
    assert "invalid e-mail" in failed["last_error"] and "EMAIL" in failed["last_error"]
    assert f"ERP key {bad}" in failed["last_error"]

    rig.sql("UPDATE erp_company_email SET value = 'ok@acme.test'")
    await rig.pusher().push_until_empty()  # the fix itself is a new pending row: pushed
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=bad)
    assert rig.portal(b24_id)["EMAIL"][0]["VALUE"] == "ok@acme.test"
    assert rig.outbox("failed") == []  # the old refusal is superseded, not left behind


async def test_outbox_retry_makes_a_failed_row_pending_again(rig: Rig) -> None:
    """A refused record leaves one failed row; retry ID makes it pending; pushed again and
    still refused, it is failed again with the portal's message — never lost, never stuck
    pending."""
    key = _new_company(rig, "Bad mail")
    rig.sql(f"INSERT INTO erp_company_email (owner_id, value) VALUES ({key}, 'x@')")
    await rig.pusher().push_until_empty()
    [failed] = rig.outbox("failed")  # two rows (insert, e-mail), one refusal, on the last
    store = OutboxStore(rig.bench.engine)
    assert store.retry(int(failed["id"])) == 1
    assert [r["id"] for r in rig.outbox("pending")] == [failed["id"]]
    stats = await rig.pusher().push_until_empty()
    assert (stats.records, stats.failed) == (1, 1)
    assert rig.outbox("pending") == []
    assert [r["id"] for r in rig.outbox("failed")] == [failed["id"]]
    assert store.retry(None) == 1


async def test_to_erp_fields_are_never_pushed(rig: Rig) -> None:
    """ASSIGNED_BY_ID is to_erp: an ERP edit of it is not captured, and even a forced
    outbox row sends nothing for it."""
    key = _new_company(rig, "Acme")
    await rig.pusher().push_until_empty()
    rig.sql("UPDATE erp_company SET assigned_by_id = 99 WHERE id = :k", k=key)
    assert rig.outbox("pending") == []
    from connector.adapters.store.database import write_transaction

    with write_transaction(rig.bench.engine) as conn:
        OutboxStore.enqueue(conn, "crm.company", key, ["assigned_by_id"])
    before = len(rig.writes())
    await rig.pusher().push_until_empty()
    assert rig.writes()[before:] == []
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    assert rig.portal(b24_id)["ASSIGNED_BY_ID"] != "99"


class Crash(Exception):
    """The pusher dies at a step (the real kill -9 runs in test_push_crash.py)."""


def _crashing(rig: Rig, step: str, mappings: MappingSet | None = None) -> Pusher:
    def checkpoint(name: str) -> None:
        if name == step:
            raise Crash(name)

    b = rig.bench
    store = OutboxStore(b.engine, worker="this-test")  # the restarted process takes its lease
    return Pusher(
        b.client, b.engine, mappings or b.mappings, CONNECTOR, outbox=store, checkpoint=checkpoint
    )


def _origin(rig: Rig, key: str) -> list[dict[str, Any]]:
    crm = rig.bench.emulator.portal().crm
    records = [crm.get("company", i) for i in crm.ids("company")]
    return [r for r in records if r["ORIGIN_ID"] == key and r["ORIGINATOR_ID"] == CONNECTOR]


async def test_an_add_lost_in_a_crash_is_found_by_origin_id_and_not_added_twice(
    rig: Rig,
) -> None:
    """The portal took the add, the local commit never happened: the next push looks the
    record up by ORIGIN_ID, links it, and leaves the portal's own defaults alone."""
    key = _new_company(rig, "Acme")
    with pytest.raises(Crash):
        await _crashing(rig, "after_write").push_until_empty()
    assert rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key) is None
    before = len(rig.writes())
    await _crashing(rig, "never").push_until_empty()
    [record] = _origin(rig, key)
    assert rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key) == int(record["ID"])
    assert rig.writes()[before:] == []  # found, linked, nothing to send again
    assert record["COMPANY_TYPE"] == "CUSTOMER"  # the portal's default, not wiped by ''
    assert rig.one("SELECT company_type FROM erp_company WHERE id = :k", k=key) == "CUSTOMER"
    assert rig.outbox("pending") == []


@pytest.mark.parametrize("policy", [DeletePolicy.DELETE, DeletePolicy.MARK])
async def test_an_erp_delete_after_a_lost_add_follows_the_delete_policy(
    rig: Rig, policy: DeletePolicy
) -> None:
    """The add reached the portal, the process died, then the ERP deleted the row: under
    delete the portal record goes too; under mark it stays, and the note says where."""
    company = rig.bench.mappings.entities["crm.company"]
    mappings = MappingSet(
        {
            **rig.bench.mappings.entities,
            "crm.company": dataclasses.replace(company, delete_policy=policy),
        }
    )
    key = _new_company(rig, "Acme")
    with pytest.raises(Crash):
        await _crashing(rig, "after_write", mappings).push_until_empty()
    [record] = _origin(rig, key)
    rig.sql("DELETE FROM erp_company WHERE id = :k", k=key)
    await _crashing(rig, "never", mappings).push_until_empty()
    exists = rig.bench.emulator.portal().crm.exists("company", int(record["ID"]))
    assert exists is (policy is DeletePolicy.MARK)
    notes = [r["note"] for r in OutboxStore(rig.bench.engine).rows(statuses=["done"])]
    if policy is DeletePolicy.MARK:
        assert f"kept in the portal as {record['ID']}" in notes[-1]
    assert rig.outbox("pending") == []


async def test_our_own_unconfirmed_update_is_not_mistaken_for_a_portal_edit(rig: Rig) -> None:
    """The portal took our update, the commit was lost, the ERP edited the field again:
    the next round recognises the portal's value as what it sent itself (no conflict) and
    pushes the newer ERP value."""
    key = _new_company(rig, "v0")
    await rig.pusher().push_until_empty()
    rig.sql("UPDATE erp_company SET title = 'v1' WHERE id = :k", k=key)
    with pytest.raises(Crash):
        await _crashing(rig, "after_write").push_until_empty()
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    assert rig.portal(b24_id)["TITLE"] == "v1"
    rig.sql("UPDATE erp_company SET title = 'v2' WHERE id = :k", k=key)
    stats = await _crashing(rig, "never").push_until_empty()
    assert (stats.updated, stats.held) == (1, 0)
    assert rig.portal(b24_id)["TITLE"] == "v2"
    assert rig.one("SELECT count(*) FROM sync_conflict") == 0


async def test_a_first_phone_added_in_the_erp_reaches_the_portal(rig: Rig) -> None:
    """The portal leaves an empty PHONE out of its answer: that reads as "no phones", so
    the ERP's first phone is sent and its value ID comes back."""
    key = _new_company(rig, "Acme")
    await rig.pusher().push_until_empty()
    rig.sql(_phone(key, "+1 555", "WORK"))
    stats = await rig.pusher().push_until_empty()
    assert stats.updated == 1
    b24_id = rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
    [phone] = rig.portal(b24_id)["PHONE"]
    assert rig.one("SELECT b24_value_id FROM erp_company_phone") == int(phone["ID"])


async def test_a_value_the_erp_column_should_not_hold_fails_that_record_only(
    tmp_path: Path,
) -> None:
    """SQLite lets the ERP write text into the NUMERIC revenue column (PostgreSQL and
    MariaDB refuse it themselves): that record's push fails naming the field and the
    column; the other record is pushed; nothing crashes."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    bench = await make_bench(url)
    rig = Rig(bench, sa.create_engine(url))
    bad = _new_company(rig, "Bad revenue")
    good = _new_company(rig, "Good")
    rig.sql("UPDATE erp_company SET revenue = 'abc' WHERE id = :k", k=bad)
    stats = await rig.pusher().push_until_empty()
    assert (stats.added, stats.failed) == (1, 1)
    [failed] = rig.outbox("failed")
    assert failed["erp_key"] == bad
    assert "REVENUE" in failed["last_error"] and "revenue" in failed["last_error"]
    assert rig.one("SELECT b24_id FROM erp_company WHERE id = :k", k=good) is not None
    rig.erp.dispose()
    await bench.http.aclose()
    bench.engine.dispose()
