"""ErpWriter.apply_many: the same tables and outcomes as apply one by one, with few statements."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_tables import MULTI_OWNER
from connector.adapters.store.erp_writer import ErpWriter
from connector.core.mapping_model import DeletePolicy, EntityMapping
from connector.errors import RecordError
from tests.store.reference_apply import apply_one

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
Item = tuple[int, dict[str, Any] | None, str | None]


@pytest.fixture
def setup(schema_db_url: str) -> Iterator[tuple[sa.Engine, ErpWriter]]:
    engine = make_engine(schema_db_url)
    yield engine, ErpWriter(load_mappings(REPO / "mappings"))
    engine.dispose()


def company(b24_id: int, rng: random.Random) -> dict[str, Any]:
    """A random portal state from a small value space, so steps often repeat a state."""
    phones = [
        {"ID": str(100 * b24_id + n), "VALUE_TYPE": rng.choice(["WORK", "HOME"]), "VALUE": v}
        for n, v in enumerate(["+1", "+2", "+3"])
        if rng.random() < 0.5
    ]
    return {
        "ID": str(b24_id),
        "TITLE": rng.choice(["Acme", "Beta", "Gamma"]),
        "COMMENTS": rng.choice(["", "note"]),
        "INDUSTRY": rng.choice(["IT", "Retail"]),
        "REVENUE": rng.choice(["1500.50", "10"]),
        "CURRENCY_ID": "EUR",
        "ASSIGNED_BY_ID": "1",
        "DATE_MODIFY": "2026-11-20T10:00:00+03:00",
        "PHONE": phones,
        "EMAIL": [{"ID": str(900 + b24_id), "VALUE_TYPE": "WORK", "VALUE": f"{b24_id}@x.test"}],
    }


def window(rng: random.Random, step: int) -> list[Item]:
    items: list[Item] = []
    for _ in range(rng.randint(1, 12)):
        b24_id = rng.randint(1, 8)
        roll = rng.random()
        record: dict[str, Any] | None
        if roll < 0.15:
            record = None
        elif roll < 0.22:
            record = company(b24_id, rng) | {"TITLE": "x" * 300}  # does not fit
        else:
            record = company(b24_id, rng)
        items.append((b24_id, record, f"m{step}-{b24_id}"))
    return items


def erp_edits(conn: sa.Connection, rng: random.Random) -> None:
    """The ERP side changes rows between windows: fields, a child row, a new child row."""
    for _ in range(rng.randint(0, 3)):
        b24_id = rng.randint(1, 8)
        what = rng.random()
        if what < 0.4:
            conn.execute(
                sa.text("UPDATE erp_company SET title = :t WHERE b24_id = :b"),
                {"t": rng.choice(["ERP", "Beta"]), "b": b24_id},
            )
        elif what < 0.6:
            conn.execute(
                sa.text("UPDATE erp_company SET comments = 'erp note' WHERE b24_id = :b"),
                {"b": b24_id},
            )
        elif what < 0.8:
            conn.execute(
                sa.text(
                    f"DELETE FROM erp_company_phone WHERE {MULTI_OWNER} IN"
                    " (SELECT id FROM erp_company WHERE b24_id = :b)"
                ),
                {"b": b24_id},
            )
        else:
            key = conn.execute(
                sa.text("SELECT id FROM erp_company WHERE b24_id = :b"), {"b": b24_id}
            ).scalar()
            if key is not None:
                conn.execute(
                    sa.text(
                        f"INSERT INTO erp_company_phone ({MULTI_OWNER}, value_type, value)"
                        " VALUES (:o, 'WORK', '+erp')"
                    ),
                    {"o": key},
                )


def one_by_one(
    writer: ErpWriter, conn: sa.Connection, m: EntityMapping, items: list[Item], now: datetime
) -> list[ApplyOutcome]:
    """What the drainer did before apply_many: first id wins, a bad record is skipped."""
    out: list[ApplyOutcome] = []
    seen: set[int] = set()
    for b24_id, record, message_id in items:
        if b24_id in seen:
            out.append(ApplyOutcome(m.entity, b24_id, "skipped"))
            continue
        seen.add(b24_id)
        try:
            with conn.begin_nested():
                out.append(
                    apply_one(writer, conn, m, b24_id, record, message_id=message_id, now=now)
                )
        except RecordError as err:
            out.append(ApplyOutcome(m.entity, b24_id, "error", error=err))
    return out


def dump(engine: sa.Engine, writer: ErpWriter) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, with surrogate keys replaced by the portal id they stand for."""
    meta = sa.MetaData()
    meta.reflect(engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        key_to_b24: dict[str, dict[str, int]] = {}
        child_owner: dict[str, str] = {}
        for m in writer.mappings.entities.values():
            key_to_b24[m.entity] = {
                str(k): b for k, b in conn.execute(sa.text(f"SELECT id, b24_id FROM {m.table}"))
            }
            for mf in m.multifields:
                child_owner[mf.table] = m.entity
        for name, table in sorted(meta.tables.items()):
            rows = []
            for r in conn.execute(sa.select(table)).mappings():
                row = {k: v for k, v in r.items() if k != "id"}
                if name == "sync_outbox":  # captured ERP edits: when they happened is noise
                    row.pop("created_at")
                if name == "sync_conflict":  # the ERP side's time comes from those rows
                    row.pop("times")
                if name in child_owner:
                    row[MULTI_OWNER] = key_to_b24[child_owner[name]].get(str(row[MULTI_OWNER]))
                if "erp_key" in row and "entity" in row:
                    row["erp_key"] = key_to_b24.get(row["entity"], {}).get(row["erp_key"], "gone")
                rows.append(tuple(sorted((k, repr(v)) for k, v in row.items())))
            out[name] = sorted(rows)
    return out


def wipe(engine: sa.Engine) -> None:
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        ordered = [t for t in reversed(meta.sorted_tables) if t.name != "alembic_version"]
        for table in sorted(ordered, key=lambda t: t.name == "sync_outbox"):  # outbox last
            conn.execute(table.delete())


def summary(outcomes: list[ApplyOutcome]) -> list[tuple[Any, ...]]:
    return [
        (
            o.entity,
            o.b24_id,
            o.action,
            o.conflicts,
            o.pending_push,
            o.conflict_id is not None,
            str(o.error) if o.error else None,
        )
        for o in outcomes
    ]


def run(engine: sa.Engine, writer: ErpWriter, m: EntityMapping, seed: int, bulk: bool) -> Any:
    rng = random.Random(seed)
    trace: list[Any] = []
    for step in range(6):
        now = NOW + timedelta(minutes=step)
        items = window(rng, step)
        with engine.begin() as conn:
            if bulk:
                outcomes = writer.apply_many(conn, m, items, now=now)
            else:
                outcomes = one_by_one(writer, conn, m, items, now)
        trace.append(summary(outcomes))
        trace.append(dump(engine, writer))
        with engine.begin() as conn:
            erp_edits(conn, rng)
    return trace


@pytest.mark.parametrize("policy", [DeletePolicy.MARK, DeletePolicy.DELETE])
def test_apply_many_matches_apply_one_by_one(setup: Any, policy: DeletePolicy) -> None:
    """Random windows (inserts, edits, multi-fields, deletes, bad values, repeats, ERP edits
    between windows): apply_many leaves the same tables and outcomes as apply per record."""
    engine, writer = setup
    m = dataclasses.replace(writer.mappings.entities["crm.company"], delete_policy=policy)
    actions: set[str] = set()
    for seed in range(3):
        wipe(engine)
        expected = run(engine, writer, m, seed, bulk=False)
        wipe(engine)
        got = run(engine, writer, m, seed, bulk=True)
        assert got == expected
        actions |= {o[2] for step in expected[::2] for o in step}
    # the random windows did exercise every path being compared
    assert {"inserted", "updated", "unchanged", "deleted", "conflict", "error", "skipped"} <= (
        actions
    )


def test_reapplying_the_same_window_writes_nothing(setup: Any) -> None:
    """A re-delivered window: every outcome unchanged and no INSERT/UPDATE/DELETE at all."""
    engine, writer = setup
    m = writer.mappings.entities["crm.company"]
    rng = random.Random(7)
    items: list[Item] = [(b, company(b, rng), None) for b in range(1, 30)]
    with engine.begin() as conn:
        writer.apply_many(conn, m, items, now=NOW)
    writes = count_statements(engine, writes_only=True)
    with engine.begin() as conn:
        again = writer.apply_many(conn, m, items, now=NOW + timedelta(hours=1))
    assert {o.action for o in again} == {"unchanged"}
    assert writes() == 0


def count_statements(engine: sa.Engine, *, writes_only: bool = False) -> Any:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if not writes_only or verb in {"INSERT", "UPDATE", "DELETE"}:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    return lambda: len(seen)


@pytest.mark.parametrize("size", [20, 200])
def test_a_window_costs_a_bounded_number_of_statements(setup: Any, size: int) -> None:
    """Inserting then updating N new records takes the same statement count for 20 and 200."""
    engine, writer = setup
    m = writer.mappings.entities["crm.company"]
    rng = random.Random(3)
    statements = count_statements(engine)
    items: list[Item] = [(b, company(b, rng), None) for b in range(1, size + 1)]
    with engine.begin() as conn:
        outcomes = writer.apply_many(conn, m, items, now=NOW)
    inserted = statements()
    assert [o.action for o in outcomes] == ["inserted"] * size
    changed: list[Item] = [(b, rec | {"TITLE": "New", "PHONE": []}, None) for b, rec, _ in items]
    with engine.begin() as conn:
        writer.apply_many(conn, m, changed, now=NOW)
    updated = statements() - inserted
    # reads: link, row, 3 child tables, conflicts; writes: a few executemany groups
    assert inserted <= 12, inserted
    assert updated <= 12, updated


def test_a_bad_record_in_the_middle_does_not_stop_the_others(setup: Any) -> None:
    """Record 2 of 3 has a title too long: it reports an error, 1 and 3 are inserted."""
    engine, writer = setup
    m = writer.mappings.entities["crm.company"]
    rng = random.Random(1)
    items: list[Item] = [
        (1, company(1, rng), "a"),
        (2, company(2, rng) | {"TITLE": "x" * 300}, "b"),
        (3, company(3, rng), "c"),
    ]
    with engine.begin() as conn:
        outcomes = writer.apply_many(conn, m, items, now=NOW)
    assert [o.action for o in outcomes] == ["inserted", "error", "inserted"]
    assert outcomes[1].error is not None and outcomes[1].error.field == "TITLE"
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT b24_id FROM erp_company ORDER BY b24_id")).scalars()
        assert list(ids) == [1, 3]


def test_the_progress_hook_runs_after_the_first_chunk(setup: Any) -> None:
    """on_progress fires once, after rows of the first chunk are written (a crash point)."""
    engine, writer = setup
    m = writer.mappings.entities["crm.company"]
    rng = random.Random(2)
    seen: list[int] = []

    def hook() -> None:
        seen.append(1)

    items: list[Item] = [(b, company(b, rng), None) for b in range(1, 4)]
    with engine.begin() as conn:
        writer.apply_many(conn, m, items, now=NOW, on_progress=hook)
    assert seen == [1]
