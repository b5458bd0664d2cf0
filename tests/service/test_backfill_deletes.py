"""A full backfill catches deletes no event reported: a linked ERP row whose portal record
is gone is marked under the mapping's delete policy, at no extra request; a record born
and drained while the backfill reads is never taken for deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.tables import sync_journal, sync_link
from connector.service.backfill import Backfiller
from tests.service.drain_harness import Bench, Crash
from tests.service.test_backfill import (
    InterleavingPortal,
    company,
    crash_on,
    discard_queue,
    last_seq,
)


def marked(bench: Bench) -> set[int]:
    """b24_ids of ERP rows marked deleted."""
    return {r["b24_id"] for r in bench.rows("erp_company") if r["b24_deleted_at"] is not None}


def dead_links(bench: Bench) -> set[int]:
    return {r["b24_id"] for r in bench.rows("sync_link") if r["deleted"]}


async def load_then_delete_unseen(bench: Bench, count: int, gone: list[int]) -> list[int]:
    """Seed and backfill ``count`` companies, then delete the ones at positions ``gone``
    in the portal with their events lost (as when the app is uninstalled)."""
    ids = bench.emulator.seed_crm(companies=count, seed=3)["company"]
    await discard_queue(bench)
    await Backfiller(bench.client, bench.engine, bench.mappings).entity(company(bench))
    assert marked(bench) == set()
    for position in gone:
        bench.emulator.ui_delete("crm.company", ids[position])
    await discard_queue(bench)
    if bench.engine.dialect.name in ("mysql", "mariadb"):
        # DATETIME keeps seconds: a link written in the read's second counts as fresh
        # (the safe side) and is left alone, so the reads start in a later second
        await asyncio.sleep(1.05)
    return [ids[p] for p in gone]


@pytest.mark.parametrize(
    ("ranges", "pages"), [(1, 1), (4, 1), (1, 50)], ids=["one-chain", "four-ranges", "batched"]
)
async def test_a_restarted_backfill_marks_rows_whose_portal_record_is_gone(
    bench: Bench, ranges: int, pages: int
) -> None:
    """Deleted inside a window, on a window's edge, and above the new highest ID: every
    one is marked (row kept, b24_deleted_at set, link dead); no other row is touched,
    and the request count is what the reads cost plus one ID-only read confirming the
    three above the new highest ID gone."""
    gone = await load_then_delete_unseen(bench, 300, [0, 7, 49, 50, 151, 297, 298, 299])
    since = last_seq(bench)
    stats = await Backfiller(
        bench.client,
        bench.engine,
        bench.mappings,
        ranges=ranges,
        min_range_ids=60,
        pages_per_request=pages,
    ).entity(company(bench), restart=True)
    assert marked(bench) == set(gone)
    assert dead_links(bench) == set(gone)
    assert len(bench.rows("erp_company")) == 300  # delete_policy: mark keeps the rows
    assert stats.deleted == len(gone)
    assert stats.records == 300 - len(gone)
    reads = bench.emulator.requests(since=since)
    if ranges == 1 and pages == 1:
        # the probe, the pages, then the tail's candidates read back by ID
        assert len(reads) == 1 + -(-(300 - len(gone)) // 50) + 1
        confirm = reads[-1].params
        assert list(confirm["select"].values()) == ["ID"]  # as PHP arrays arrive
        assert sorted(int(i) for i in confirm["filter"]["@ID"].values()) == gone[-3:]


async def test_a_second_backfill_marks_nothing_more(bench: Bench) -> None:
    """Marking is idempotent: a row already marked is not counted again."""
    gone = await load_then_delete_unseen(bench, 120, [3, 119])
    b = Backfiller(bench.client, bench.engine, bench.mappings)
    assert (await b.entity(company(bench), restart=True)).deleted == 2
    assert (await b.entity(company(bench), restart=True)).deleted == 0
    assert marked(bench) == set(gone)


async def test_a_killed_backfill_still_finds_the_deletes_on_both_sides_of_the_kill(
    bench: Bench,
) -> None:
    """A kill after the first window committed: the resumed run covers from the cursor
    on, so a delete below the kill (committed with its window) and one above are marked."""
    gone = await load_then_delete_unseen(bench, 200, [10, 180])
    b = Backfiller(
        bench.client,
        bench.engine,
        bench.mappings,
        pages_per_request=1,
        checkpoint=crash_on("after_commit"),
    )
    with pytest.raises(Crash):
        await b.entity(company(bench), restart=True)
    assert marked(bench) == {gone[0]}
    resumed = Backfiller(bench.client, bench.engine, bench.mappings, pages_per_request=1)
    await resumed.entity(company(bench))
    assert marked(bench) == set(gone)


async def test_a_record_born_and_drained_meanwhile_is_not_taken_for_deleted(
    bench: Bench,
) -> None:
    """A company created and drained while the backfill reads has an ID above the probe
    and a link newer than it: left alone, while an old link above the probe (the highest
    company deleted unseen) is marked."""
    gone = await load_then_delete_unseen(bench, 100, [99])
    born: list[int] = []

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 1:  # the last window: no read after it sees the newborn
            born.append(bench.emulator.ui_add("crm.company", {"TITLE": "Born meanwhile"}))
            assert (await bench.drainer().drain_until_empty()).inserted == 1

    portal = InterleavingPortal(bench.client, hook)
    stats = await Backfiller(
        portal, bench.engine, bench.mappings, pages_per_request=1, prefetch=False
    ).entity(company(bench), restart=True)
    assert marked(bench) == set(gone)
    assert born[0] not in dead_links(bench)
    assert stats.deleted == 1


def stamped_behind(bench: Bench, b24_id: int, by: timedelta) -> None:
    """As if ``b24_id`` was drained by a worker whose clock runs ``by`` behind: its link
    and the journal's batches carry that worker's time."""
    with bench.engine.begin() as conn:
        link = (sync_link.c.entity == "crm.company") & (sync_link.c.b24_id == b24_id)
        [stamp] = conn.execute(sa.select(sync_link.c.updated_at).where(link)).scalars()
        conn.execute(sa.update(sync_link).where(link).values(updated_at=stamp - by))
        for key, stamp in conn.execute(
            sa.select(sync_journal.c.process_id, sync_journal.c.updated_at)
        ):
            conn.execute(
                sa.update(sync_journal)
                .where(sync_journal.c.process_id == key)
                .values(updated_at=stamp - by)
            )


async def test_a_newborn_linked_by_a_host_whose_clock_runs_behind_is_read_back_not_marked(
    bench: Bench,
) -> None:
    """A company born and drained after the probe, its link stamped an hour early (a
    peer's clock behind): the link alone looks older than the probe, but the tail reads
    its candidates back, finds it live and leaves it; the one really deleted above the
    reads is still marked."""
    gone = await load_then_delete_unseen(bench, 100, [99])
    born: list[int] = []

    async def hook(window: int, rows: list[Mapping[str, Any]]) -> None:
        if window == 1:
            born.append(bench.emulator.ui_add("crm.company", {"TITLE": "Born on a slow host"}))
            assert (await bench.drainer().drain_until_empty()).inserted == 1
            stamped_behind(bench, born[0], timedelta(hours=1))

    portal = InterleavingPortal(bench.client, hook)
    stats = await Backfiller(
        portal, bench.engine, bench.mappings, pages_per_request=1, prefetch=False
    ).entity(company(bench), restart=True)
    assert born[0] not in dead_links(bench)
    assert marked(bench) == set(gone)
    assert stats.deleted == 1
