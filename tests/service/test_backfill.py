"""Backfill against the emulator: a full, exact, resumable initial load on every database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa

from connector.adapters.store.erp_tables import MULTI_OWNER
from connector.core.batch_commands import MAX_COMMANDS
from connector.core.id_window import IdWindow
from connector.core.mapping_model import MappingSet
from connector.errors import ConfigError
from connector.service.backfill import (
    Backfiller,
    BackfillStats,
    EntityStats,
    resolve_entities,
    run_backfill,
)
from tests.service.drain_harness import Bench, Crash

# --- helpers ---------------------------------------------------------------------------------


async def discard_queue(bench: Bench) -> None:
    """Empty the offline queue (the seeding's ADD events) so only the test's edits remain."""
    while True:
        answer = await bench.client.call("event.offline.get", {"clear": 1, "limit": 50})
        if not (answer.result or {}).get("events"):
            return


def crash_on(step: str, occurrence: int = 1) -> Callable[[str], None]:
    """A checkpoint hook that kills the run the ``occurrence``-th time ``step`` is reached."""
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == step:
            seen["n"] += 1
            if seen["n"] == occurrence:
                raise Crash(f"{step} #{occurrence}")

    return hook


def list_windows(bench: Bench, since: int) -> list[tuple[str, int]]:
    """``(method, lower ID bound)`` of the first page of every paging batch after ``since``."""
    out: list[tuple[str, int]] = []
    for entry in bench.emulator.requests("batch", since=since):
        cmd = entry.params.get("cmd") or {}
        first = cmd.get("p0") if isinstance(cmd, Mapping) else None
        if not isinstance(first, str):
            continue
        method, _, query = first.partition("?")
        after = parse_qs(query).get("filter[>ID]", [""])[0]
        out.append((method, int(after)))
    return out


def last_seq(bench: Bench) -> int:
    return bench.emulator.log[-1].seq if bench.emulator.log else 0


def erp_state(bench: Bench) -> dict[str, list[tuple[Any, ...]]]:
    """Every ERP table plus sync_link and sync_record_error, as sorted plain tuples."""
    meta = sa.MetaData()
    meta.reflect(bench.engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with bench.engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name.startswith("erp_") or name in (
                "sync_link",
                "sync_record_error",
                "sync_conflict",
            ):
                out[name] = sorted(
                    (tuple(str(v) for v in row) for row in conn.execute(sa.select(table))), key=str
                )
    return out


def cursor(bench: Bench, entity: str) -> tuple[str | None, bool] | None:
    with bench.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT value, finished FROM sync_cursor WHERE name = :n"),
            {"n": f"backfill:{entity}"},
        ).first()
    return None if row is None else (row[0], bool(row[1]))


def backfiller(bench: Bench, portal: Any = None, **kwargs: Any) -> Backfiller:
    return Backfiller(portal or bench.client, bench.engine, bench.mappings, **kwargs)


def company(bench: Bench) -> Any:
    return bench.mappings.entities["crm.company"]


def children(bench: Bench, table: str) -> dict[int, list[tuple[str, str]]]:
    """Multi-field rows per ERP owner key: (value type, value), sorted."""
    out: dict[int, list[tuple[str, str]]] = {}
    with bench.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().all()
    for r in rows:
        out.setdefault(int(r[MULTI_OWNER]), []).append((r["value_type"], r["value"]))
    return {k: sorted(v) for k, v in out.items()}


# --- behaviour -------------------------------------------------------------------------------


async def test_a_full_load_matches_the_portal_exactly(bench: Bench) -> None:
    """520 companies and a few contacts land once each, field by field as the portal has
    them; each entity is one paging request per 2,500 rows, and ends marked finished."""
    seeded = bench.emulator.seed_crm(companies=520, contacts=7, seed=11)
    since = last_seq(bench)
    stats = await run_backfill(
        bench.client, bench.engine, bench.mappings, entities=["company", "crm.contact"]
    )
    assert isinstance(stats, BackfillStats)
    assert set(stats.entities) == {"crm.company", "crm.contact"}
    assert (stats.entities["crm.company"].inserted, stats.entities["crm.contact"].inserted) == (
        520,
        7,
    )
    crm = bench.emulator.portal().crm
    rows = bench.rows("erp_company")
    assert [r["b24_id"] for r in rows] == seeded["company"]
    phones = children(bench, "erp_company_phone")
    for row in rows:
        portal = crm.get("company", row["b24_id"])
        assert (row["title"], row["comments"], row["company_type"]) == (
            portal["TITLE"],
            portal["COMMENTS"],
            portal["COMPANY_TYPE"],
        )
        assert phones[row["id"]] == sorted((p["VALUE_TYPE"], p["VALUE"]) for p in portal["PHONE"])
    assert [r["b24_id"] for r in bench.rows("erp_contact")] == seeded["contact"]
    assert list_windows(bench, since) == [("crm.company.list", 0), ("crm.contact.list", 0)]
    assert cursor(bench, "crm.company") == (str(seeded["company"][-1]), True)
    assert cursor(bench, "crm.contact") == (str(seeded["contact"][-1]), True)


@pytest.mark.parametrize(
    ("step", "occurrence", "committed"),
    [
        ("after_commit", 2, 2),  # killed after the 2nd window committed
        ("mid_apply", 3, 2),  # killed inside the 3rd window's transaction
        ("after_read", 3, 2),  # killed after the 3rd window was read, before applying it
    ],
)
async def test_a_killed_run_resumes_from_its_last_committed_window(
    bench: Bench, step: str, occurrence: int, committed: int
) -> None:
    """A kill mid-way leaves the cursor at the last committed window; the next run reads
    only the windows after it (counted in the emulator's log) and the load ends exact."""
    ids = bench.emulator.seed_crm(companies=260, seed=3)["company"]
    per_window = 50  # one page per request: six windows, the last one short
    since = last_seq(bench)
    with pytest.raises(Crash):
        await backfiller(bench, pages_per_request=1, checkpoint=crash_on(step, occurrence)).entity(
            company(bench)
        )
    killed = list_windows(bench, since)
    assert len(killed) in (occurrence, occurrence + 1)  # plus a window prefetched meanwhile
    at = ids[committed * per_window - 1]
    assert cursor(bench, "crm.company") == (str(at), False)
    assert len(bench.rows("erp_company")) == committed * per_window

    since = last_seq(bench)
    stats = await backfiller(bench, pages_per_request=1).entity(company(bench))
    resumed = list_windows(bench, since)
    assert resumed[0] == ("crm.company.list", at)
    expected = [ids[i * per_window - 1] for i in range(committed, 6)]
    assert [after for _, after in resumed] == expected
    assert stats.records == 260 - committed * per_window
    assert stats.started_after == at
    rows = bench.rows("erp_company")
    assert [r["b24_id"] for r in rows] == ids
    assert cursor(bench, "crm.company") == (str(ids[-1]), True)


async def test_a_finished_entity_is_left_alone_and_restart_changes_nothing(bench: Bench) -> None:
    """A second backfill sends no request for a finished entity; --restart reads it all
    again and leaves the ERP tables and links exactly as they were."""
    bench.emulator.seed_crm(companies=130, seed=5)
    await run_backfill(bench.client, bench.engine, bench.mappings, entities=["company"])
    first = erp_state(bench)

    since = last_seq(bench)
    again = await run_backfill(bench.client, bench.engine, bench.mappings, entities=["company"])
    assert again.entities["crm.company"].already_finished
    assert bench.emulator.requests(since=since) == []

    restarted = await run_backfill(
        bench.client,
        bench.engine,
        bench.mappings,
        entities=["company"],
        restart=True,
        pages_per_request=1,
    )
    s = restarted.entities["crm.company"]
    assert s.records == 130 and s.inserted == s.updated == s.bad == 0
    assert s.unchanged + s.skipped == 130
    assert list_windows(bench, since)[0] == ("crm.company.list", 0)
    assert erp_state(bench) == first


class InterleavingPortal:
    """The real client, with a hook run after each window is read and before it is
    handed over: the place where a live queue event can overtake the backfill."""

    def __init__(
        self, inner: Any, hook: Callable[[int, list[Mapping[str, Any]]], Awaitable[None]]
    ) -> None:
        self.inner = inner
        self.hook = hook

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.inner.call(method, params)

    async def iter_pages(
        self,
        window: IdWindow,
        *,
        after: int = 0,
        batched: bool = True,
        pages_per_request: int = MAX_COMMANDS,
    ) -> AsyncIterator[list[Mapping[str, Any]]]:
        n = 0
        async for rows in self.inner.iter_pages(
            window, after=after, batched=batched, pages_per_request=pages_per_request
        ):
            await self.hook(n, rows)
            n += 1
            yield rows


async def test_a_live_event_applied_meanwhile_wins_over_the_older_read(bench: Bench) -> None:
    """A company edited in the portal and drained while its (older) window is in flight
    keeps the drained state; one edited before its window was read is applied as read."""
    ids = bench.emulator.seed_crm(companies=120, seed=9)["company"]
    await discard_queue(bench)
    overtaken, early = ids[5], ids[70]  # window 1 and window 2 (50 rows per window)

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 0:
            assert any(int(r["ID"]) == overtaken for r in rows)
            bench.emulator.ui_update("crm.company", overtaken, {"TITLE": "Fresh from queue"})
            bench.emulator.ui_update("crm.company", early, {"TITLE": "Edited early"})
            drained = await bench.drainer().drain_until_empty()
            assert drained.inserted == 2

    portal = InterleavingPortal(bench.client, hook)
    stats = await backfiller(bench, portal, pages_per_request=1).entity(company(bench))
    titles = {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}
    assert titles[overtaken] == "Fresh from queue"
    assert titles[early] == "Edited early"
    assert len(titles) == 120
    assert stats.records == 120
    if bench.engine.dialect.name not in ("mysql", "mariadb"):
        # second-precision DATETIME may also (safely) skip ``early``: same second
        assert (stats.skipped, stats.inserted) == (1, 118)
    assert stats.skipped >= 1


async def test_without_the_rule_the_older_read_would_overwrite_the_live_event(bench: Bench) -> None:
    """Control for the rule above: if the read were taken as newer than the drained
    write (a clock far in the future), the older read would overwrite the drained state."""
    from datetime import UTC, datetime, timedelta

    ids = bench.emulator.seed_crm(companies=60, seed=4)["company"]
    await discard_queue(bench)

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 0:
            bench.emulator.ui_update("crm.company", ids[1], {"TITLE": "Fresh from queue"})
            await bench.drainer().drain_until_empty()

    def future() -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)

    portal = InterleavingPortal(bench.client, hook)
    stats = await backfiller(bench, portal, now=future).entity(company(bench))
    assert stats.skipped == 0
    titles = {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}
    assert titles[ids[1]] != "Fresh from queue"


async def test_a_bad_value_is_kept_and_the_load_goes_on(bench: Bench) -> None:
    """A title too long for its column becomes a sync_record_error row naming entity, id
    and field; every other company is loaded and the entity still finishes."""
    ids = bench.emulator.seed_crm(companies=60, seed=2)["company"]
    bad = bench.emulator.ui_add("crm.company", {"TITLE": "x" * 300})
    more = bench.emulator.seed_crm(companies=5, seed=8)["company"]
    stats = await backfiller(bench).entity(company(bench))
    assert (stats.bad, stats.inserted) == (1, 65)
    assert [r["b24_id"] for r in bench.rows("erp_company")] == ids + more
    with bench.engine.connect() as conn:
        err = conn.execute(
            sa.text("SELECT entity, b24_id, field, message, payload FROM sync_record_error")
        ).one()
    assert err[:3] == ("crm.company", bad, "TITLE")
    assert f"crm.company id={bad} field=TITLE" in err[3]
    assert cursor(bench, "crm.company") == (str(more[-1]), True)


async def test_progress_hears_every_window(bench: Bench) -> None:
    """The progress sink gets the top ID, each window's running totals, and the end."""
    ids = bench.emulator.seed_crm(companies=130, seed=1)["company"]
    events: list[tuple[str, Any]] = []

    class Sink:
        def entity_started(self, entity: str, *, after: int, top_id: int | None) -> None:
            events.append(("start", (entity, after, top_id)))

        def window_applied(self, entity: str, stats: EntityStats) -> None:
            events.append(("window", (stats.records, stats.last_id)))

        def entity_done(self, entity: str, stats: EntityStats) -> None:
            events.append(("done", (stats.records, stats.finished)))

    await backfiller(bench, pages_per_request=1).run([company(bench)], progress=Sink())
    assert events == [
        ("start", ("crm.company", 0, ids[-1])),
        ("window", (50, ids[49])),
        ("window", (100, ids[99])),
        ("window", (130, ids[-1])),
        ("done", (130, True)),
    ]


def test_entity_names_take_either_spelling_and_unknown_ones_are_refused(
    mappings: MappingSet,
) -> None:
    """``company`` and ``crm.company`` name one mapping; an unknown name lists the mapped."""
    assert [m.entity for m in resolve_entities(mappings, ["company", "crm.company"])] == [
        "crm.company"
    ]
    assert [m.entity for m in resolve_entities(mappings, None)] == list(mappings.entities)
    with pytest.raises(ConfigError, match=r"--entity widget: not a mapped entity.*crm\.deal"):
        resolve_entities(mappings, ["widget"])


@pytest.fixture
def mappings() -> MappingSet:
    from connector.adapters.mapping_files import load_mappings
    from tests.service.drain_harness import REPO

    return load_mappings(REPO / "mappings")


# --- the command ------------------------------------------------------------------------------


def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, **values: str) -> str:
    from tests.service.drain_harness import REPO

    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in __import__("os").environ if n.startswith("B24_")]:
        monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("B24_DATABASE_URL", url)
    monkeypatch.setenv("B24_MAPPINGS_DIR", str(REPO / "mappings"))
    for key, value in values.items():
        monkeypatch.setenv(f"B24_{key.upper()}", value)
    return url


def test_the_command_binds_first_then_loads_with_plain_lines_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``backfill --entity company`` end to end (emulator on loopback, stored tokens, the
    real wiring): the offline events are bound before the first read, progress comes as
    plain lines, and a second run says the entity is finished."""
    from datetime import UTC, datetime

    from click.testing import CliRunner

    from connector.adapters.store import migrate
    from connector.adapters.store.database import make_engine
    from connector.adapters.store.erp_schema import sync_erp_schema
    from connector.adapters.store.tokens import TokenStore
    from connector.core.oauth_tokens import parse_token_answer
    from connector.emulator.app import Emulator
    from connector.emulator.server import ServerThread
    from connector.service.commands.backfill import backfill
    from tests.service.drain_harness import REPO

    emulator = Emulator(seed=1)
    emulator.seed_crm(companies=70, seed=6)
    with ServerThread(emulator) as server:
        creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
        url = _cli_env(
            monkeypatch,
            tmp_path,
            portal_url=server.base_url,
            oauth_url=server.base_url,
            client_id=creds["client_id"],
            client_secret=creds["client_secret"],
            connector_id="erp_cli",
        )
        engine = make_engine(url)
        migrate.upgrade(engine)
        from connector.adapters.mapping_files import load_mappings

        sync_erp_schema(engine, load_mappings(REPO / "mappings"))
        host = server.base_url.split("://", 1)[1]
        TokenStore(engine, host).save(parse_token_answer(host, creds, datetime.now(UTC)))
        engine.dispose()

        result = CliRunner().invoke(backfill, ["--entity", "company"])
        assert result.exit_code == 0, (result.output, result.exception)
        again = CliRunner().invoke(backfill, ["--entity", "crm.company"])
    lines = result.output.splitlines()
    assert lines[0] == "backfill crm.company: reading from the start, highest ID now 70"
    assert lines[1].startswith("backfill crm.company: 70 records, last ID 70, ")
    assert lines[-1].startswith(
        "backfill crm.company: done, 70 records (70 new, 0 changed, 0 unchanged, 0 newer in "
        "the ERP, 0 conflicts, 0 bad) in "
    )
    assert again.output.splitlines() == [
        "backfill crm.company: finished before (last ID 70); --restart loads it again"
    ]
    start_up, *rest = emulator.requests()
    assert _called(start_up) == ["feature.get", "feature.get", "event.get", "crm.company.list"]
    methods = [m for e in rest for m in _called(e)]  # the probe above is read before a bind,
    first_read = methods.index("crm.company.list")  # so its answer is not used: read again
    assert "event.bind" in methods[:first_read]
    assert {e.auth_connector for e in emulator.requests()} == {"erp_cli"}


def _called(entry: Any) -> list[str]:
    """The methods a logged request ran: a batch's sub-calls in order, else its own."""
    if entry.method != "batch":
        return [entry.method]
    commands = entry.params.get("cmd") or {}
    return [str(text).split("?", 1)[0] for text in commands.values()]


def test_the_command_refuses_an_unknown_entity_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """An unknown --entity is a configuration error (exit 2) naming it and the mapped ones,
    raised before the database or the portal is touched."""
    from click.testing import CliRunner

    from connector.service.commands.backfill import backfill

    _cli_env(monkeypatch, tmp_path)
    bad = CliRunner().invoke(backfill, ["--entity", "widget"])
    assert isinstance(bad.exception, ConfigError) and bad.exception.exit_code == 2
    assert "--entity widget: not a mapped entity" in str(bad.exception)
    assert not (tmp_path / "cli.db").exists()


def test_the_rich_bar_follows_the_id_range_and_prints_the_summary() -> None:
    """On a terminal the bar's position is the ID range covered; the end prints a summary."""
    from io import StringIO

    from rich.console import Console

    from connector.service.commands.backfill import RichProgress

    console = Console(file=StringIO(), force_terminal=True, width=120)
    with RichProgress(console) as sink:
        sink.entity_started("crm.company", after=100, top_id=600)
        stats = EntityStats("crm.company", records=250, last_id=350, inserted=250)
        sink.window_applied("crm.company", stats)
        [task] = sink.progress.tasks
        assert (task.completed, task.total, task.fields["records"]) == (250, 500, 250)
        stats.finished = True
        sink.entity_done("crm.company", stats)
    assert "crm.company: done, 250 records (250 new" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_paging_stops_at_the_highest_id_seen_at_the_start(bench: Bench) -> None:
    """A full last window needs no extra request to find the end: paging stops at the
    highest ID probed at the start; a company created meanwhile is left to the queue."""
    ids = bench.emulator.seed_crm(companies=100, seed=7)["company"]
    await discard_queue(bench)
    created: list[int] = []

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 0:
            created.append(bench.emulator.ui_add("crm.company", {"TITLE": "Born meanwhile"}))

    since = last_seq(bench)
    portal = InterleavingPortal(bench.client, hook)
    stats = await backfiller(bench, portal, pages_per_request=1).entity(company(bench))
    assert [after for _, after in list_windows(bench, since)] == [0, ids[49]]
    assert stats.records == 100 and stats.last_id == ids[-1]
    assert [r["b24_id"] for r in bench.rows("erp_company")] == ids
    [event] = bench.queue()
    assert event["EVENT_NAME"] == "ONCRMCOMPANYADD"
    assert int(event["EVENT_DATA"]["FIELDS"]["ID"]) == created[0]


async def edited_after_its_sync(bench: Bench) -> tuple[Bench, Any, int]:
    """60 companies, one of them drained as "Current" and then edited to "Briefly" in
    the portal (its event queued). The bench and mapping returned leave DATE_MODIFY out,
    which would otherwise make an undo of the edit a change of its own."""
    from dataclasses import replace

    full = company(bench)
    slim_company = replace(full, fields=tuple(f for f in full.fields if f.portal != "DATE_MODIFY"))
    slim = replace(bench, mappings=MappingSet(entities={"crm.company": slim_company}))
    ids = bench.emulator.seed_crm(companies=60, seed=12)["company"]
    await discard_queue(bench)
    target = ids[3]
    bench.emulator.ui_update("crm.company", target, {"TITLE": "Current"})
    await slim.drainer().drain_until_empty()  # the ERP and the base say "Current"
    bench.emulator.ui_update("crm.company", target, {"TITLE": "Briefly"})
    return slim, slim_company, target


async def test_an_edit_undone_while_the_window_is_in_flight_does_not_win(bench: Bench) -> None:
    """A company edited (read by the backfill in that state) and then edited back, drained
    meanwhile: the drain changes nothing and leaves the link's time alone, yet the older
    read must not win; the ERP keeps the portal's current title. (The mapping here leaves
    out DATE_MODIFY, which would otherwise make the undo a change of its own.)"""
    slim, slim_company, target = await edited_after_its_sync(bench)

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 0:
            seen = next(r for r in rows if int(r["ID"]) == target)
            assert seen["TITLE"] == "Briefly"
            bench.emulator.ui_update("crm.company", target, {"TITLE": "Current"})
            drained = await slim.drainer().drain_until_empty()
            assert drained.unchanged == 1

    portal = InterleavingPortal(bench.client, hook)
    stats = await backfiller(slim, portal).entity(slim_company)
    titles = {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}
    assert titles[target] == "Current"
    assert bench.emulator.portal().crm.get("company", target)["TITLE"] == "Current"
    assert stats.skipped >= 1


class ResumeRecorder(InterleavingPortal):
    """Records when the backfill asks for the window after the one it holds."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        async def nothing(window: int, rows: list[Mapping[str, Any]]) -> None:
            return None

        super().__init__(inner, nothing)
        self.log = log

    async def iter_pages(
        self,
        window: IdWindow,
        *,
        after: int = 0,
        batched: bool = True,
        pages_per_request: int = MAX_COMMANDS,
    ) -> AsyncIterator[list[Mapping[str, Any]]]:
        n = 0
        async for rows in self.inner.iter_pages(
            window, after=after, batched=batched, pages_per_request=pages_per_request
        ):
            yield rows
            self.log.append(f"next after {n}")
            n += 1


@pytest.mark.parametrize("prefetch", [True, False])
async def test_the_next_window_is_read_while_this_one_is_applied(
    bench: Bench, prefetch: bool
) -> None:
    """With prefetch the request for window k+1 goes out before window k commits (the
    portal's time and the governor's wait overlap the apply); without, strictly after."""
    bench.emulator.seed_crm(companies=120, seed=13)
    log: list[str] = []
    commits = iter(range(100))

    def checkpoint(step: str) -> None:
        if step == "after_commit":
            log.append(f"commit {next(commits)}")

    portal = ResumeRecorder(bench.client, log)
    stats = await backfiller(
        bench, portal, pages_per_request=1, checkpoint=checkpoint, prefetch=prefetch
    ).entity(company(bench))
    assert stats.records == 120
    if prefetch:
        assert log == ["next after 0", "commit 0", "next after 1", "commit 1", "commit 2"]
    else:
        assert log == ["commit 0", "next after 0", "commit 1", "next after 1", "commit 2"]
