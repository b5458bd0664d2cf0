"""The drain in one request per batch: each fetch carries the previous clear and reserves
the next batch ahead; crashes, failures and lost answers around that lose nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core.batch_commands import Command, CommandOutcome
from connector.errors import AmbiguousError
from tests.service.drain_harness import Bench, Crash


@pytest.fixture
def bench(schema_bench: Bench) -> Bench:
    return schema_bench  # the shared schema: these tests do not build it


def add_companies(bench: Bench, count: int) -> list[int]:
    return [bench.emulator.ui_add("crm.company", {"TITLE": f"Company {n}"}) for n in range(count)]


def journal_states(bench: Bench) -> list[str]:
    with bench.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT state FROM sync_journal")).scalars())


def assert_all_synced(bench: Bench, ids: list[int]) -> None:
    rows = bench.rows("erp_company")
    assert [r["b24_id"] for r in rows] == ids
    assert bench.queue() == []
    assert set(journal_states(bench)) == {"cleared"}


async def test_a_drain_of_n_batches_is_n_plus_two_requests(bench: Bench) -> None:
    """Five batches of 50: the first get, one request per batch (clear + fetch + next get),
    and the last clear with the get that finds the queue empty: 7 requests, not 11."""
    ids = add_companies(bench, 250)
    before = bench.rest_calls()
    stats = await bench.drainer(limit=50).drain_until_empty()
    assert (stats.batches, stats.inserted) == (5, 250)
    assert bench.rest_calls() - before == 5 + 2
    assert_all_synced(bench, ids)


@pytest.mark.parametrize(
    "step", ["after_get", "after_reserve", "mid_apply", "after_commit", "after_clear"]
)
async def test_a_crash_in_a_later_batch_loses_nothing(bench: Bench, step: str) -> None:
    """Die at a step the second time it comes (the second ``after_get`` is the get that
    travelled with the first fetch); a fresh drainer resumes and drains to the crash-free
    state, every record once."""
    ids = add_companies(bench, 120)
    with pytest.raises(Crash):
        await bench.drainer(step, crash_on=2, limit=50).drain_until_empty()
    fresh = bench.drainer(limit=50)
    await fresh.resume()
    await fresh.drain_until_empty()
    assert_all_synced(bench, ids)


async def test_a_failed_fetch_halts_the_get_it_carries(bench: Bench) -> None:
    """The fetch fails inside the carrying batch: the get after it does not run, so only
    the batch being fetched is locked; a resume then drains everything."""
    ids = add_companies(bench, 120)
    bench.emulator.set_faults(fail_methods={"crm.company.list": 1})
    drainer = bench.drainer(limit=50)
    with pytest.raises(Exception, match=r"crm\.company\.list"):
        await drainer.drain_once()
    locked = {r["PROCESS_ID"] for r in bench.queue() if r["PROCESS_ID"]}
    assert len(locked) == 1 and journal_states(bench) == ["reserved"]
    assert len([r for r in bench.queue() if not r["PROCESS_ID"]]) == 70
    await drainer.resume()
    await drainer.drain_until_empty()
    assert_all_synced(bench, ids)


async def test_stopping_after_a_batch_applies_the_one_reserved_ahead(bench: Bench) -> None:
    """A worker told to stop after one batch flushes: the batch its fetch reserved ahead is
    applied and cleared too, and the rest of the queue is left free, not locked."""
    add_companies(bench, 120)
    drainer = bench.drainer(limit=50)
    first = await drainer.drain_once()
    flushed = await drainer.flush()
    assert (first.inserted, flushed.inserted) == (50, 50)
    assert [r["PROCESS_ID"] for r in bench.queue()] == [""] * 20
    assert set(journal_states(bench)) == {"cleared"}


async def test_a_bounded_drain_reserves_nothing_past_its_last_batch(bench: Bench) -> None:
    """``drain_until_empty(max_batches=2)`` takes two batches and leaves the third free."""
    add_companies(bench, 120)
    stats = await bench.drainer(limit=50).drain_until_empty(max_batches=2)
    assert stats.inserted == 100
    assert [r["PROCESS_ID"] for r in bench.queue()] == [""] * 20


class LosesOneAnswer:
    """The real client, except that the ``n``-th batch is carried out by the portal and
    its answer lost on the way back (as a dropped connection would)."""

    def __init__(self, bench: Bench, n: int) -> None:
        self.client = bench.client
        self.n = n

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.client.call(method, params)

    async def batch(
        self, commands: Sequence[Command], *, halt: bool = False
    ) -> dict[str, CommandOutcome]:
        outcomes = await self.client.batch(commands, halt=halt)
        self.n -= 1
        if self.n == 0:
            raise AmbiguousError("batch: the answer was lost (test)", code="NETWORK")
        return outcomes


async def test_a_lost_answer_of_a_carrying_batch_refetches_and_adopts_what_it_reserved(
    bench: Bench,
) -> None:
    """The second batch request (clear 1, fetch 2, get 3) runs in the portal but its answer
    is lost: the fetch is repeated alone, batch 3 (locked under a process id never seen)
    is found and adopted in the same drain, and everything lands once."""
    ids = add_companies(bench, 160)
    drainer = bench.drainer(limit=50, portal=LosesOneAnswer(bench, 2))
    stats = await drainer.drain_until_empty()
    assert stats.resumed == 1
    assert_all_synced(bench, ids)
