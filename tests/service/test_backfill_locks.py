"""A backfill window and a drain of the same record are ordered: the window holds the
drainer's record locks from before its freshness check until its commit, so a drain
cannot slip its commit in between (on SQLite the window's up-front write lock does it)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from connector.service.drainer import DrainStats
from tests.service.drain_harness import CONNECTOR, Bench
from tests.service.test_backfill import backfiller, edited_after_its_sync

DRAIN_WAIT_S = 1.5
"""How long the window, mid-transaction, gives the drain to finish before going on."""


@pytest.mark.backends("postgresql", "mariadb")  # SQLite: the window's write lock, up front
async def test_an_undo_drained_inside_the_windows_transaction_waits_for_its_commit(
    bench: Bench,
) -> None:
    """A company read by the window as "Briefly", then edited back to "Current" and
    drained while the window's transaction is open (after its freshness check): the
    drain finds the portal equal to its base, so it writes no link, only its journal
    entry. Were it let through, the window would write "Briefly" over it for good. It
    waits for the window's commit instead, then sees the window's base and writes the
    portal's "Current". (DATE_MODIFY is left out, as it would make the undo a change.)"""
    slim, slim_company, target = await edited_after_its_sync(bench)
    loop = asyncio.get_running_loop()
    drains: list[concurrent.futures.Future[DrainStats]] = []
    finished_inside: list[bool] = []

    def checkpoint(step: str) -> None:
        if step != "mid_apply" or drains:
            return
        # inside the window's transaction, its freshness check done: the undo lands and
        # is drained now (the event loop is free while the window runs in a thread)
        bench.emulator.ui_update("crm.company", target, {"TITLE": "Current"})
        drain = asyncio.run_coroutine_threadsafe(slim.drainer().drain_until_empty(), loop)
        drains.append(drain)
        try:
            drain.result(timeout=DRAIN_WAIT_S)
            finished_inside.append(True)
        except concurrent.futures.TimeoutError:
            finished_inside.append(False)

    await backfiller(
        slim, pages_per_request=1, checkpoint=checkpoint, connector_id=CONNECTOR
    ).entity(slim_company)
    await asyncio.wrap_future(drains[0])
    titles = {r["b24_id"]: r["title"] for r in bench.rows("erp_company")}
    assert bench.emulator.portal().crm.get("company", target)["TITLE"] == "Current"
    assert titles[target] == "Current"
    assert finished_inside == [False]  # the drain waited for the window's commit
