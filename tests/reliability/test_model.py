"""A Hypothesis stateful model of both sides: portal and ERP edits, inserts and deletes,
connector steps, crashes at every checkpoint with a restart, operator resolutions.

Invariants checked after every rule:

* **no echo loops** — the connector's portal writes never outnumber the ERP changes (and
  resolutions) that asked for them, and the queue never delivers more records than the
  portal UI made changes: our own writes come back on neither side;
* **a conflict only when both sides moved** — an open conflict names a record whose same
  field (or its existence) changed on both sides since the two last agreed.

Teardown quiesces (resolve what is open, drain and push until nothing moves) and then
every record of the example must agree on both sides, with no duplicate on either.

``B24_TEST_MODEL_EXAMPLES`` sets the number of examples (CI: 200; ``10000`` for a long run);
every shrunk failure found is kept below as a named regression test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from connector.adapters.mapping_files import load_mappings
from connector.adapters.rest_client import RestClient
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import OutboxStore
from connector.core.batch_commands import Command
from connector.core.mapping_model import DeletePolicy, MappingSet
from connector.emulator.app import Emulator
from connector.service.drainer import Drainer
from connector.service.holds import Holds
from connector.service.pusher import Pusher
from connector.service.resolution import Resolution
from connector.service.resolver import Resolver
from tests.service.drain_harness import BASE, CONNECTOR, REPO, Bench, Crash, StaticToken

EXAMPLES = int(os.environ.get("B24_TEST_MODEL_EXAMPLES", "200"))


def resolver_of(drainer: Drainer, pusher: Pusher) -> Resolver:
    return Resolver(drainer, pusher, Holds(drainer))


MODEL = settings(
    max_examples=EXAMPLES,
    stateful_step_count=8,
    deadline=None,  # a loaded 2-core machine: no per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
FIELDS = {"title": "TITLE", "comments": "COMMENTS"}
DRAIN_STEPS = ["after_get", "after_reserve", "mid_apply", "after_commit", "after_clear"]
PUSH_STEPS = ["after_claim", "after_fetch", "after_write", "after_commit"]
WORKER = "model-worker"
VALUES = st.sampled_from(["a", "b", "c", "d"])


@dataclasses.dataclass
class Record:
    """One record of the example, as far as either side has it."""

    b24_id: int | None = None
    erp_key: int | None = None
    dirty_portal: set[str] = dataclasses.field(default_factory=set)
    dirty_erp: set[str] = dataclasses.field(default_factory=set)
    gone_portal: bool = False
    gone_erp: bool = False


class Rig:
    """One example's emulator and client, on the database every example shares."""

    def __init__(self, bench: Bench, shared: Rigs) -> None:
        self.bench = bench
        self.erp = shared.erp
        self.mappings = shared.mappings
        self.writer = shared.writer
        self.loop = shared.loop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _checkpoint(self, crash_at: str | None) -> Any:
        def checkpoint(step: str) -> None:
            if step == crash_at:
                raise Crash(step)

        return checkpoint

    def drainer(self, crash_at: str | None = None) -> Drainer:
        b = self.bench
        return Drainer(
            b.client,
            b.engine,
            self.mappings,
            CONNECTOR,
            worker=WORKER,
            writer=self.writer,
            checkpoint=self._checkpoint(crash_at),
        )

    def pusher(self, crash_at: str | None = None) -> Pusher:
        b = self.bench
        return Pusher(
            b.client,
            b.engine,
            self.mappings,
            CONNECTOR,
            outbox=OutboxStore(b.engine, worker=WORKER),
            writer=self.writer,
            checkpoint=self._checkpoint(crash_at),
        )

    async def step(self) -> int:
        """One connector round: resume, drain, settle holds, push. Returns drained records."""
        drainer = self.drainer()
        await drainer.resume()
        drained = await drainer.drain_until_empty()
        await Holds(drainer).settle()
        await self.pusher().push_until_empty()
        return drained.records

    def sql(self, statement: str, **params: Any) -> Any:
        with self.erp.begin() as conn:
            return conn.execute(sa.text(statement), params)

    def scalar(self, query: str, **params: Any) -> Any:
        with self.erp.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()

    def portal_writes(self) -> int:
        count = 0
        for entry in self.bench.emulator.requests():
            calls = entry.sub_calls if entry.method == "batch" else [vars(entry)]
            for call in calls:
                method = str(call.get("method", ""))
                if method.startswith("crm.company.") and method.rsplit(".", 1)[1] in (
                    "add",
                    "update",
                    "delete",
                ):
                    count += 1
        return count

    def open_conflicts(self) -> dict[int, int]:
        """b24_id → open conflict id."""
        with self.erp.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, b24_id FROM sync_conflict WHERE status = 'open'")
            ).all()
        return {int(b): int(i) for i, b in rows}


class BothSides(RuleBasedStateMachine):
    records = Bundle("records")

    def __init__(self, rig: Rig) -> None:
        super().__init__()
        self.rig = rig
        self.tracked: list[Record] = []
        self.ui_changes = 0
        self.erp_changes = 0
        self.resolutions = 0
        self.drained = 0
        self.writes_at_start = rig.portal_writes()
        self.crm = rig.bench.emulator.portal().crm

    # --- the portal's users ----------------------------------------------------------------

    @rule(target=records, title=VALUES)
    def portal_insert(self, title: str) -> Record:
        rec = Record(b24_id=self.rig.bench.emulator.ui_add("crm.company", {"TITLE": title}))
        rec.dirty_portal.add("title")
        self.ui_changes += 1
        self.tracked.append(rec)
        return rec

    @rule(rec=records, field=st.sampled_from(sorted(FIELDS)), value=VALUES)
    def portal_update(self, rec: Record, field: str, value: str) -> None:
        if rec.b24_id is None or not self.crm.exists("company", rec.b24_id):
            return
        self.rig.bench.emulator.ui_update("crm.company", rec.b24_id, {FIELDS[field]: value})
        rec.dirty_portal.add(field)
        self.ui_changes += 1

    @rule(rec=records)
    def portal_delete(self, rec: Record) -> None:
        if rec.b24_id is None or not self.crm.exists("company", rec.b24_id):
            return
        self.rig.bench.emulator.ui_delete("crm.company", rec.b24_id)
        rec.gone_portal = True
        self.ui_changes += 1

    # --- the ERP's users -------------------------------------------------------------------

    @rule(target=records, title=VALUES)
    def erp_insert(self, title: str) -> Record:
        with self.rig.erp.begin() as conn:
            conn.execute(sa.text("INSERT INTO erp_company (title) VALUES (:t)"), {"t": title})
            key = conn.execute(sa.text("SELECT max(id) FROM erp_company")).scalar_one()
        rec = Record(erp_key=int(key))
        rec.dirty_erp.add("title")
        self.erp_changes += 1
        self.tracked.append(rec)
        return rec

    def _erp_key(self, rec: Record) -> int | None:
        if rec.erp_key is None and rec.b24_id is not None:
            key = self.rig.scalar("SELECT id FROM erp_company WHERE b24_id = :b", b=rec.b24_id)
            rec.erp_key = None if key is None else int(key)
        if rec.erp_key is None:
            return None
        alive = self.rig.scalar("SELECT count(*) FROM erp_company WHERE id = :k", k=rec.erp_key)
        return rec.erp_key if alive else None

    @rule(rec=records, field=st.sampled_from(sorted(FIELDS)), value=VALUES)
    def erp_update(self, rec: Record, field: str, value: str) -> None:
        key = self._erp_key(rec)
        if key is None:
            return
        self.rig.sql(f"UPDATE erp_company SET {field} = :v WHERE id = :k", v=value, k=key)
        rec.dirty_erp.add(field)
        self.erp_changes += 1

    @rule(rec=records)
    def erp_delete(self, rec: Record) -> None:
        key = self._erp_key(rec)
        if key is None:
            return
        self.rig.sql("DELETE FROM erp_company WHERE id = :k", k=key)
        rec.gone_erp = True
        self.erp_changes += 1

    # --- the connector and the operator ----------------------------------------------------

    def _agreed(self) -> None:
        """After a complete round: records without an open conflict agree again."""
        held = self.rig.open_conflicts()
        for rec in self.tracked:
            if rec.b24_id is None:
                key = rec.erp_key
                b24 = self.rig.scalar("SELECT b24_id FROM erp_company WHERE id = :k", k=key)
                rec.b24_id = None if b24 is None else int(b24)
            if rec.b24_id not in held:
                rec.dirty_portal.clear()
                rec.dirty_erp.clear()
                rec.gone_portal = rec.gone_erp = rec.gone_portal or rec.gone_erp

    @rule()
    def connector_step(self) -> None:
        self.drained += self.rig.run(self.rig.step())
        self._agreed()

    @rule(where=st.sampled_from(DRAIN_STEPS + PUSH_STEPS))
    def crash_and_restart(self, where: str) -> None:
        async def crashed() -> int:
            drained = 0
            try:
                if where in DRAIN_STEPS:
                    drained = (await self.rig.drainer(where).drain_until_empty()).records
                else:
                    await self.rig.pusher(where).push_until_empty()
            except Crash:
                pass
            return drained

        self.drained += self.rig.run(crashed())  # counted as far as it got
        # the restart: start-up resume and sweep, then a whole round

        async def restarted() -> int:
            drainer = self.rig.drainer()
            await drainer.resume()
            await Holds(drainer).sweep()
            return await self.rig.step()

        self.drained += self.rig.run(restarted())
        self._agreed()

    @precondition(lambda self: bool(self.rig.open_conflicts()))
    @rule(keep=st.sampled_from(["portal", "erp"]), data=st.data())
    def operator_resolves(self, keep: str, data: st.DataObject) -> None:
        held = self.rig.open_conflicts()
        conflict = data.draw(st.sampled_from(sorted(held.values())))
        resolver = resolver_of(self.rig.drainer(), self.rig.pusher())
        self.rig.run(resolver.resolve(Resolution(conflict, keep=keep, by="model")))
        self.resolutions += 1
        self.drained += self.rig.run(self.rig.step())
        self._agreed()

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def no_echo(self) -> None:
        writes = self.rig.portal_writes() - self.writes_at_start
        assert writes <= self.erp_changes + self.resolutions, (writes, self.erp_changes)
        assert self.drained <= self.ui_changes, (self.drained, self.ui_changes)

    @invariant()
    def conflicts_only_where_both_sides_moved(self) -> None:
        held = self.rig.open_conflicts()
        for rec in self.tracked:
            if rec.b24_id is None or rec.b24_id not in held:
                continue
            both = rec.dirty_portal & rec.dirty_erp
            deleted_vs_edit = (rec.gone_portal and (rec.dirty_erp or rec.gone_erp)) or (
                rec.gone_erp and (rec.dirty_portal or rec.gone_portal)
            )
            assert both or deleted_vs_edit, (rec, held[rec.b24_id])

    # --- teardown: quiesce and converge --------------------------------------------------------

    def teardown(self) -> None:
        for _ in range(6):
            held = self.rig.open_conflicts()
            for conflict in sorted(held.values()):
                resolver = resolver_of(self.rig.drainer(), self.rig.pusher())
                self.rig.run(resolver.resolve(Resolution(conflict, keep="portal", by="model")))
            self.rig.run(self.rig.step())
            busy = self.rig.scalar(
                "SELECT count(*) FROM sync_outbox WHERE status IN ('pending', 'held')"
            )
            if not self.rig.open_conflicts() and not busy and not self.rig.bench.queue():
                break
        assert self.rig.open_conflicts() == {}
        assert self.rig.bench.queue() == []
        assert (
            self.rig.scalar(
                "SELECT count(*) FROM sync_outbox WHERE status IN ('pending', 'held', 'failed')"
            )
            == 0
        )
        self._agreed()
        for rec in self.tracked:
            self._converged(rec)

    def _converged(self, rec: Record) -> None:
        self._erp_key(rec)  # a portal insert learns its ERP key from the drain
        with self.rig.erp.connect() as conn:  # by key, and by portal ID (a row re-created
            rows = (  # by "keep portal" after an ERP delete has a new key)
                conn.execute(
                    sa.text("SELECT * FROM erp_company WHERE id = :k OR b24_id = :b"),
                    {"k": rec.erp_key or -1, "b": rec.b24_id or -1},
                )
                .mappings()
                .all()
            )
        live_erp = [r for r in rows if r["b24_deleted_at"] is None]
        in_portal = rec.b24_id is not None and self.crm.exists("company", rec.b24_id)
        if not in_portal:
            assert live_erp == [], f"portal record {rec.b24_id} is gone, ERP row {rows} is not"
            return
        assert len(live_erp) == 1, f"portal record {rec.b24_id} has ERP rows {rows}"
        assert rec.b24_id is not None
        portal = self.crm.get("company", rec.b24_id)
        row = live_erp[0]
        assert row["b24_id"] == rec.b24_id
        for column, code in FIELDS.items():
            assert (row[column] or "") == (portal[code] or ""), (rec, column, row, portal)
        twins = self.rig.scalar("SELECT count(*) FROM erp_company WHERE b24_id = :b", b=rec.b24_id)
        assert twins == 1
        if rec.erp_key is not None:  # an ERP insert is created in the portal once
            made = [
                i
                for i in self.crm.ids("company")
                if self.crm.get("company", i)["ORIGIN_ID"] == str(rec.erp_key)
                and self.crm.get("company", i)["ORIGINATOR_ID"] == CONNECTOR
            ]
            assert len(made) <= 1, (rec, made)


class Rigs:
    """A fresh emulator per example and every table emptied (so an example replays the
    same way when Hypothesis shrinks it), on one migrated database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(url)
        self.erp = sa.create_engine(url)  # the ERP's own connection: plain SQL
        shipped = load_mappings(REPO / "mappings")
        company = shipped.entities["crm.company"]
        # delete means delete on both sides, so "converged" has one meaning for deletes
        self.mappings = MappingSet(
            {
                **shipped.entities,
                "crm.company": dataclasses.replace(company, delete_policy=DeletePolicy.DELETE),
            }
        )
        self.writer = ErpWriter(self.mappings)  # one set of table objects for every round
        meta = sa.MetaData()
        meta.reflect(self.engine)
        self.tables = [
            t.name
            for t in reversed(meta.sorted_tables)
            if t.name.startswith(("erp_", "sync_")) and t.name != "sync_rate_bucket"
        ]
        self.current: Rig | None = None

    def fresh(self) -> Rig:
        self.close_current()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY"))
            else:
                for name in self.tables:
                    conn.execute(sa.text(f"DELETE FROM {name}"))
        emulator = Emulator()
        emulator.set_limits(enabled=False)  # counts, not timing
        creds = emulator.install_app(scopes=("crm", "pull", "user"))
        http = emulator.client(BASE)
        client = RestClient(
            http, f"{BASE}/rest/", connector_id=CONNECTOR, auth=StaticToken(creds["access_token"])
        )
        bench = Bench(emulator, self.engine, self.mappings, http, client)
        binds = [
            Command(f"b{n}", "event.bind", {"event": e, "event_type": "offline"})
            for n, e in enumerate(self.mappings.entities["crm.company"].event_names())
        ]
        self.loop.run_until_complete(client.batch(binds))
        self.current = Rig(bench, self)
        return self.current

    def close_current(self) -> None:
        if self.current is not None:
            self.loop.run_until_complete(self.current.bench.http.aclose())
            self.current = None

    def close(self) -> None:
        self.close_current()
        self.loop.close()
        self.erp.dispose()
        self.engine.dispose()


@pytest.fixture
def rigs(schema_db_url: str) -> Iterator[Rigs]:
    made = Rigs(schema_db_url)
    yield made
    made.close()


@pytest.mark.backends("sqlite", "postgresql")
def test_both_sides_converge_without_echo_whatever_the_interleaving(rigs: Rigs) -> None:
    """The model above, run for ``B24_TEST_MODEL_EXAMPLES`` examples."""
    run_state_machine_as_test(lambda: BothSides(rigs.fresh()), settings=MODEL)
