"""Backfill reading several ID ranges side by side: the portal's latency overlaps, every
record lands once, and a crash resumes from the contiguous prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from connector.service.backfill import Backfiller
from tests.service.drain_harness import Bench, Crash, make_bench
from tests.service.test_backfill import crash_on, cursor, discard_queue


@pytest.fixture
async def bench(schema_db_url: str) -> AsyncIterator[Bench]:
    b = await make_bench(schema_db_url)
    b.emulator.seed_crm(companies=600)
    await discard_queue(b)
    yield b
    await b.http.aclose()
    b.engine.dispose()


def ranged(bench: Bench, **kwargs: object) -> Backfiller:
    return Backfiller(
        bench.client, bench.engine, bench.mappings, ranges=4, min_range_ids=100, **kwargs
    )


def loaded_ids(bench: Bench) -> list[int]:
    with bench.engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT b24_id FROM erp_company ORDER BY b24_id")).scalars()
        )


async def test_ranges_are_read_concurrently_and_every_record_lands_once(bench: Bench) -> None:
    """With 0.3 s per request, the four ranges' first batches are in flight together."""
    company = bench.mappings.entities["crm.company"]
    bench.emulator.set_faults(delay=0.3)
    seen = len(bench.emulator.requests())
    stats = await ranged(bench).entity(company)
    portal_ids = bench.emulator.portal().crm.ids("company")

    assert loaded_ids(bench) == sorted(portal_ids)
    assert stats.inserted == len(portal_ids) == 600
    assert cursor(bench, "crm.company") == (str(max(portal_ids)), True)
    pages = [e for e in bench.emulator.requests()[seen:] if e.method == "batch"]
    first_wave = [e.time for e in pages[:4]]
    assert max(first_wave) - min(first_wave) < 0.3  # all four sent before any answered


async def test_a_crash_resumes_from_the_contiguous_prefix_and_loads_nothing_twice(
    bench: Bench,
) -> None:
    company = bench.mappings.entities["crm.company"]
    bench.emulator.set_faults(delay=0.05)  # every range has a request in flight at once
    with pytest.raises(Crash):  # one page per request: the ranges' windows interleave
        await ranged(bench, checkpoint=crash_on("after_commit", 3), pages_per_request=1).entity(
            company
        )
    value, finished = cursor(bench, "crm.company") or ("0", False)
    assert not finished
    done = set(loaded_ids(bench))
    # every ID up to the cursor is loaded (the prefix), whatever later ranges loaded
    portal_ids = sorted(bench.emulator.portal().crm.ids("company"))
    prefix = int(value or 0)
    assert 0 < prefix < max(portal_ids)
    assert {i for i in portal_ids if i <= prefix} <= done
    assert any(i > prefix for i in done)  # a later range had committed windows too

    stats = await ranged(bench).entity(company)
    assert loaded_ids(bench) == portal_ids  # each once: a unique b24_id per row
    assert stats.inserted == len(portal_ids) - len(done)  # the rest re-read, unchanged
    assert cursor(bench, "crm.company") == (str(max(portal_ids)), True)
