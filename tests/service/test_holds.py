"""No record held for good: refusals fixed in the portal flow, unmapped events are cleared,
a delete during a conflict joins it, orphaned holds are released — against the emulator."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core.mapping_model import ConflictPolicy, MappingSet
from connector.service.bindings import ensure_bindings, offline_bindings
from connector.service.drainer import Drainer
from connector.service.holds import Holds
from connector.service.pusher import Pusher
from connector.service.resolution import Resolution
from connector.service.resolver import Resolver
from tests.service.drain_harness import CONNECTOR, Bench


@pytest.fixture
def bench(schema_bench: Bench) -> Bench:
    return schema_bench  # the shared schema: these tests do not build it


def _drainer(bench: Bench, mappings: MappingSet | None = None) -> Drainer:
    return Drainer(bench.client, bench.engine, mappings or bench.mappings, CONNECTOR)


async def _one_drain(bench: Bench, mappings: MappingSet | None = None) -> None:
    """What sync --once and each wake of run do: drain, then settle the holds."""
    drainer = _drainer(bench, mappings)
    await drainer.drain_until_empty()
    await Holds(drainer).settle()


def _held(bench: Bench) -> list[dict[str, Any]]:
    return [r for r in bench.queue() if r["ERROR"] == "1"]


def _scalar(bench: Bench, query: str) -> Any:
    with bench.engine.connect() as conn:
        return conn.execute(sa.text(query)).scalar_one()


def _without(mappings: MappingSet, entity: str) -> MappingSet:
    return MappingSet({k: v for k, v in mappings.entities.items() if k != entity})


async def test_a_refused_value_fixed_in_the_portal_reaches_the_erp_within_one_drain(
    bench: Bench,
) -> None:
    """A 300-character title is refused and held; the portal user shortens it; the next
    drain re-reads the held record, applies it, closes the error and clears the queue."""
    cid = bench.emulator.ui_add("crm.company", {"TITLE": "x" * 300})
    await _one_drain(bench)
    assert len(_held(bench)) == 1
    assert _scalar(bench, "SELECT count(*) FROM sync_record_error WHERE status = 'open'") == 1
    bench.emulator.ui_update("crm.company", cid, {"TITLE": "Short now"})
    await _one_drain(bench)
    assert [r["title"] for r in bench.rows("erp_company")] == ["Short now"]
    assert _scalar(bench, "SELECT count(*) FROM sync_record_error WHERE status = 'open'") == 0
    assert bench.queue() == []


async def test_an_unchanged_refusal_is_not_retried_on_every_drain(bench: Bench) -> None:
    """Nothing changed in the portal: the held record stays held, costing one read."""
    bench.emulator.ui_add("crm.company", {"TITLE": "x" * 300})
    await _one_drain(bench)
    before = [r["ID"] for r in _held(bench)]
    await _one_drain(bench)
    assert [r["ID"] for r in _held(bench)] == before
    assert _scalar(bench, "SELECT count(*) FROM sync_record_error") == 1  # updated, not added


async def test_events_of_an_unmapped_entity_are_cleared_not_held(bench: Bench) -> None:
    """A lead event after the lead mapping was removed: cleared with one log line, and the
    start-up bindings check unbinds the lead events."""
    no_leads = _without(bench.mappings, "crm.lead")
    bench.emulator.ui_add("crm.lead", {"TITLE": "Lead"})
    bench.emulator.ui_add("crm.company", {"TITLE": "Company"})
    await _one_drain(bench, no_leads)
    assert bench.queue() == []
    assert [r["title"] for r in bench.rows("erp_company")] == ["Company"]
    report = await ensure_bindings(bench.client, no_leads, CONNECTOR)
    assert sorted(report.unbound) == ["ONCRMLEADADD", "ONCRMLEADDELETE", "ONCRMLEADUPDATE"]
    bound = offline_bindings((await bench.client.call("event.get")).result, CONNECTOR)
    assert not any(name.startswith("ONCRMLEAD") for name in bound)


async def _conflict(bench: Bench) -> int:
    cid = bench.emulator.ui_add("crm.company", {"TITLE": "Acme"})
    await _one_drain(bench)
    with bench.engine.begin() as conn:
        conn.execute(sa.text("UPDATE erp_company SET title = 'ERP title'"))
    bench.emulator.ui_update("crm.company", cid, {"TITLE": "Portal title"})
    await _one_drain(bench)
    assert _scalar(bench, "SELECT count(*) FROM sync_conflict WHERE status = 'open'") == 1
    return cid


async def test_a_portal_delete_during_an_open_conflict_joins_it(bench: Bench) -> None:
    """The portal deletes a record in conflict: the ERP row is neither marked deleted nor
    dropped; the conflict names the delete; keep portal then applies it and releases all."""
    cid = await _conflict(bench)
    bench.emulator.ui_delete("crm.company", cid)
    await _one_drain(bench)
    [row] = bench.rows("erp_company")
    assert (row["title"], row["b24_deleted_at"]) == ("ERP title", None)
    fields = _scalar(bench, "SELECT fields FROM sync_conflict")
    assert "__record__" in (
        fields if isinstance(fields, dict) else __import__("json").loads(fields)
    )
    assert len(_held(bench)) == 2  # the held update and the delete
    drainer = _drainer(bench)
    pusher = Pusher(bench.client, bench.engine, bench.mappings, CONNECTOR)
    resolver = Resolver(drainer, pusher, Holds(drainer))
    await resolver.resolve(
        Resolution(int(_scalar(bench, "SELECT id FROM sync_conflict")), keep="portal")
    )
    assert bench.rows("erp_company")[0]["b24_deleted_at"] is not None
    assert bench.queue() == []


async def test_a_held_record_nothing_accounts_for_is_released_by_the_sweep(bench: Bench) -> None:
    """A conflict closed behind the connector's back (or a resolution that died before its
    release) leaves an ERROR record: the start-up sweep drains it."""
    cid = await _conflict(bench)
    from connector.adapters.store.database import write_transaction

    with write_transaction(bench.engine) as conn:  # resolved and written, never released
        conn.execute(sa.text("UPDATE erp_company SET title = 'Portal title'"))
        conn.execute(
            sa.text("UPDATE sync_conflict SET status = 'resolved', released_at = created_at")
        )
    bench.emulator.ui_update("crm.company", cid, {"COMMENTS": "waited"})
    await Holds(_drainer(bench)).sweep()
    assert bench.queue() == []
    assert bench.rows("erp_company")[0]["comments"] == "waited"


async def test_newer_wins_takes_the_later_side_and_a_tie_within_the_skew_is_a_conflict(
    bench: Bench,
) -> None:
    """TITLE under newer_wins: a portal edit a minute after the ERP's wins on both sides;
    two edits within the clock-skew tolerance are left to the operator."""
    company = bench.mappings.entities["crm.company"]
    fields = tuple(
        dataclasses.replace(f, conflict=ConflictPolicy.NEWER_WINS) if f.portal == "TITLE" else f
        for f in company.fields
    )
    newer = MappingSet(
        {**bench.mappings.entities, "crm.company": dataclasses.replace(company, fields=fields)}
    )
    first = bench.emulator.ui_add("crm.company", {"TITLE": "One"})
    second = bench.emulator.ui_add("crm.company", {"TITLE": "Two"})
    await _one_drain(bench, newer)
    with bench.engine.begin() as conn:  # plain SQL that MariaDB reads the same way
        conn.execute(sa.text("UPDATE erp_company SET title = 'One (ERP)' WHERE title = 'One'"))
        conn.execute(sa.text("UPDATE erp_company SET title = 'Two (ERP)' WHERE title = 'Two'"))
    bench.emulator.ui_update("crm.company", second, {"TITLE": "Two (portal, at once)"})
    bench.emulator.advance(60)
    bench.emulator.ui_update("crm.company", first, {"TITLE": "One (portal, later)"})
    await _one_drain(bench, newer)
    titles = {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}
    assert titles[first] == "One (portal, later)"
    assert titles[second] == "Two (ERP)"  # within the skew: kept, and a conflict opened
    assert _scalar(bench, "SELECT b24_id FROM sync_conflict WHERE status = 'open'") == second


def _resolver(bench: Bench, mappings: MappingSet | None = None) -> Resolver:
    maps = mappings or bench.mappings
    pusher = Pusher(bench.client, bench.engine, maps, CONNECTOR)
    drainer = _drainer(bench, maps)
    return Resolver(drainer, pusher, Holds(drainer))


def _conflict_id(bench: Bench) -> int:
    return int(_scalar(bench, "SELECT id FROM sync_conflict WHERE status = 'open'"))


async def test_keep_erp_after_the_erp_deleted_the_row_never_blanks_the_portal(
    bench: Bench,
) -> None:
    """The ERP deletes a row in conflict; --keep erp settles the delete (the shipped mark
    policy keeps the portal record) instead of sending empty values."""
    cid = await _conflict(bench)
    with bench.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM erp_company"))
    await Pusher(bench.client, bench.engine, bench.mappings, CONNECTOR).push_until_empty()
    await _resolver(bench).resolve(Resolution(_conflict_id(bench), keep="erp"))
    assert bench.emulator.portal().crm.get("company", cid)["TITLE"] == "Portal title"
    assert _scalar(bench, "SELECT count(*) FROM sync_conflict WHERE status = 'open'") == 0
    assert _scalar(bench, "SELECT count(*) FROM sync_outbox WHERE status = 'held'") == 0
    assert _held(bench) == []


async def test_ignore_on_a_delete_conflict_keeps_the_erp_row_and_its_edit(bench: Bench) -> None:
    """--ignore of a delete-vs-edit conflict: the ERP row stays as it is, unlinked; the
    released delete does not delete or mark it."""
    cid = await _conflict(bench)
    bench.emulator.ui_delete("crm.company", cid)
    await _one_drain(bench)
    await _resolver(bench).resolve(Resolution(_conflict_id(bench), ignore=True))
    await _one_drain(bench)
    [row] = bench.rows("erp_company")
    assert (row["title"], row["b24_deleted_at"], row["b24_id"]) == ("ERP title", None, None)
    assert bench.queue() == []


async def test_value_is_refused_for_a_multi_field_or_a_record_deleted_on_one_side(
    bench: Bench,
) -> None:
    """--value makes sense only for a plain field of a record both sides still have."""
    from connector.errors import ConfigError

    await _conflict(bench)
    conflict = _conflict_id(bench)
    with pytest.raises(ConfigError, match="has no field PHONE"):
        await _resolver(bench).resolve(Resolution(conflict, values={"PHONE": "1"}))
    cid = int(_scalar(bench, "SELECT b24_id FROM sync_conflict"))
    bench.emulator.ui_delete("crm.company", cid)
    with pytest.raises(ConfigError, match="deleted in the portal"):
        await _resolver(bench).resolve(Resolution(conflict, values={"TITLE": "Agreed"}))
    assert _scalar(bench, "SELECT status FROM sync_conflict") == "open"
