"""Bad input from the portal and from the ERP: each gives a clear error naming the record
and the field, nothing is lost, nothing is held for good, and the rest keeps flowing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.db_errors import store_error
from tests.service.drain_harness import CONNECTOR, Bench


def app_id(bench: Bench) -> str:
    [client_id] = list(bench.emulator.oauth.apps)
    return str(client_id)


def errors(bench: Bench) -> list[dict[str, Any]]:
    with bench.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity, b24_id, field, message, payload, status FROM sync_record_error")
        ).mappings()
        out = [dict(r) for r in rows]
    for row in out:
        if isinstance(row["payload"], str):
            row["payload"] = json.loads(row["payload"])
    return out


MALFORMED: list[tuple[str, str, Any, str]] = [
    ("false", "ONCRMCOMPANYUPDATE", False, "EVENT_DATA.FIELDS.ID"),
    ("a string", "ONCRMCOMPANYUPDATE", "FIELDS[ID]=5", "EVENT_DATA.FIELDS.ID"),
    ("no FIELDS", "ONCRMCOMPANYUPDATE", {"OTHER": 1}, "EVENT_DATA.FIELDS.ID"),
    ("a non-numeric ID", "ONCRMCOMPANYADD", {"FIELDS": {"ID": "abc"}}, "EVENT_DATA.FIELDS.ID"),
    ("a negative ID", "ONCRMCONTACTUPDATE", {"FIELDS": {"ID": -3}}, "EVENT_DATA.FIELDS.ID"),
]


@pytest.mark.parametrize(
    ("what", "event", "data", "field"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
async def test_a_malformed_queue_record_is_kept_named_and_cleared_and_the_rest_flows(
    bench: Bench, what: str, event: str, data: Any, field: str
) -> None:
    """Between two good companies, a record whose payload names no record: the good ones
    land, the bad one is kept whole in sync_record_error with the queue record and the
    field named, and it is cleared (nothing could ever fix it: holding it is forever)."""
    first = bench.emulator.ui_add("crm.company", {"TITLE": "Before"})
    queued = bench.emulator.queue_raw(app_id(bench), CONNECTOR, event, data)
    last = bench.emulator.ui_add("crm.company", {"TITLE": "After"})
    stats = await bench.drainer().drain_until_empty()
    assert [r["b24_id"] for r in bench.rows("erp_company")] == [first, last]
    assert stats.bad == 1
    [err] = errors(bench)
    assert err["field"] == field and err["status"] == "open"
    assert f"queue record '{queued}'" in err["message"] or f"'{queued}'" in err["message"]
    assert err["payload"]["EVENT_NAME"] == event  # the whole record, nothing lost
    assert bench.queue() == []  # cleared, not held
    again = await bench.drainer().drain_until_empty()  # and not re-held by a later drain
    assert again.records == 0 and len(errors(bench)) == 1


async def test_an_event_no_mapping_names_is_cleared_with_a_line(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown event name in our queue: cleared and named in the log; the rest lands."""
    good = bench.emulator.ui_add("crm.company", {"TITLE": "Fine"})
    bench.emulator.queue_raw(app_id(bench), CONNECTOR, "ONCRMSOMETHINGADD", {"FIELDS": {"ID": 1}})
    with caplog.at_level("INFO"):
        await bench.drainer().drain_until_empty()
    assert [r["b24_id"] for r in bench.rows("erp_company")] == [good]
    assert bench.queue() == []
    assert "ONCRMSOMETHINGADD" in caplog.text


async def test_an_event_for_a_record_deleted_since_changes_nothing_and_is_cleared(
    bench: Bench,
) -> None:
    """An update naming a company that no longer exists: nothing is created, nothing is
    held, and a company synced before stays as it was."""
    kept = bench.emulator.ui_add("crm.company", {"TITLE": "Kept"})
    await bench.drainer().drain_until_empty()
    bench.emulator.queue_raw(
        app_id(bench), CONNECTOR, "ONCRMCOMPANYUPDATE", {"FIELDS": {"ID": 999}}
    )
    stats = await bench.drainer().drain_until_empty()
    assert stats.bad == 0 and bench.queue() == []
    assert [(r["b24_id"], r["title"]) for r in bench.rows("erp_company")] == [(kept, "Kept")]


async def test_a_value_the_column_cannot_hold_is_flagged_not_cleared(bench: Bench) -> None:
    """A title longer than its column: this record is held in the portal (ERROR=1) with a
    record error naming record and field, so a later fix in the portal reaches the ERP;
    clearing it instead would lose the change."""
    bad = bench.emulator.ui_add("crm.company", {"TITLE": "x" * 300})
    good = bench.emulator.ui_add("crm.company", {"TITLE": "Fine"})
    await bench.drainer().drain_until_empty()
    [held] = bench.queue()
    assert held["ERROR"] == "1" and int(held["EVENT_DATA"]["FIELDS"]["ID"]) == bad
    [err] = errors(bench)
    assert (err["b24_id"], err["field"]) == (bad, "TITLE")
    assert f"crm.company id={bad} field=TITLE" in err["message"]
    assert [r["b24_id"] for r in bench.rows("erp_company")] == [good]


@pytest.mark.backends("postgresql", "mariadb")  # SQLite refuses: our triggers name the column
async def test_an_erp_column_dropped_behind_our_back_is_named_and_loses_nothing(
    bench: Bench,
) -> None:
    """Someone drops erp_company.comments: the drain stops with an error naming the
    table, and the change stays in the queue; put the column back (db upgrade) and it
    lands."""
    cid = bench.emulator.ui_add("crm.company", {"TITLE": "Acme", "COMMENTS": "hello"})
    with bench.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE erp_company DROP COLUMN comments"))
    with pytest.raises(sa.exc.SQLAlchemyError) as failed:
        await bench.drainer().drain_until_empty()
    said = str(store_error(failed.value))  # what the worker and the CLI print
    assert "column erp_company.comments is missing (run db upgrade" in said
    assert [int(r["EVENT_DATA"]["FIELDS"]["ID"]) for r in bench.queue()] == [cid]
    from connector.adapters.store.erp_schema import sync_erp_schema

    sync_erp_schema(bench.engine, bench.mappings)
    fresh = bench.drainer()
    await fresh.resume()
    await fresh.drain_until_empty()
    assert [(r["b24_id"], r["comments"]) for r in bench.rows("erp_company")] == [(cid, "hello")]
    assert bench.queue() == []


@pytest.mark.parametrize("empty_as_list", [False, True], ids=["left-out", "PHONE-[]"])
async def test_an_empty_multi_field_reads_the_same_left_out_or_as_an_empty_list(
    bench: Bench, empty_as_list: bool
) -> None:
    """A portal that answers ``PHONE: []`` for a company with no phone, or leaves PHONE
    out: either way no phone row, and removing the last phone removes it in the ERP."""
    bench.emulator.set_empty_multi_in_lists(empty_as_list)
    bare = bench.emulator.ui_add("crm.company", {"TITLE": "No phone"})
    cid = bench.emulator.ui_add(
        "crm.company", {"TITLE": "Acme", "PHONE": [{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}]}
    )
    await bench.drainer().drain_until_empty()
    with bench.engine.connect() as conn:
        phones = conn.execute(sa.text("SELECT b24_value_id FROM erp_company_phone")).scalars().all()
    assert len(phones) == 1
    value_id = bench.emulator.portal().crm.get("company", cid)["PHONE"][0]["ID"]
    bench.emulator.ui_update("crm.company", cid, {"PHONE": [{"ID": value_id, "VALUE": ""}]})
    await bench.drainer().drain_until_empty()
    with bench.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM erp_company_phone")).scalar() == 0
    assert {r["b24_id"] for r in bench.rows("erp_company")} == {bare, cid}
    assert errors(bench) == []
