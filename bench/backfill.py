"""Backfill throughput against the in-process emulator, on SQLite and (if reachable) PostgreSQL.

Run from the checkout: ``.venv/bin/python bench/backfill.py [--records 10000]``.
The default is 5,000 records per database (two full 50-page requests); the local apply
goes through ``ErpWriter.apply_many`` (a few statements per window of 500), so the run
takes seconds on SQLite plus PostgreSQL.

Per database, one full backfill of ``--records`` seeded companies (crm.company) with the
emulator enforcing **2 requests/s, burst 50**, and the REST client pacing itself with its
rate governor. Waits happen on a **simulated clock** (``ManualClock``; every wait also
moves the emulator's clock), so nothing sleeps for real. The governor's bucket starts
**full**, as after a long run: that is the steady state, where each request waits its
0.5 s (a cold bucket would let the first ~40 requests through at once and measure only
local speed). From that one run:

* **rate-limited records/s** = records / (wall time + simulated waits): what the run takes
  against a portal answering as fast as the emulator, counting the waits as if none of
  them overlapped the apply (conservative: the backfill prefetches the next window while
  it applies one, so in real time a wait partly hides behind the apply). The bound is
  ``2,500 records per request × 2 requests/s = 5,000 records/s`` (50 chained pages of 50
  rows per batch request); the table shows the share of it reached.
* **limiter off records/s** = records / wall time: since the waits cost no real time, the
  wall time is the run without the limiter (``--separate-run`` checks this with a second
  run, emulator limiter disabled and no governor).
* **apply records/s** = records / time from each window's arrival to its commit (from the
  backfill's checkpoint hook): the local ERP apply alone, independent of the limiter.

``requests`` counts the REST requests the emulator logged for the backfill (so also tells
the REST budget: requests per record).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from connector.adapters.rate_governor import MemoryLedger, RateGovernor  # noqa: E402
from connector.adapters.rest_client import RestClient  # noqa: E402
from connector.core.client_clock import ManualClock  # noqa: E402
from connector.core.rate_bucket import BucketState, profile_for  # noqa: E402
from connector.service.backfill import Backfiller  # noqa: E402
from tests.databases import ServerDatabase, server_database  # noqa: E402
from tests.service.drain_harness import BASE, CONNECTOR, Bench, make_bench  # noqa: E402

RATE, BURST = 2.0, 50
DEFAULT_RECORDS = 5000  # two full batch requests; the default run takes seconds
RECORDS_PER_REQUEST = 50 * 50
BOUND = RECORDS_PER_REQUEST * RATE  # records/s


@dataclass
class Row:
    database: str
    records: int
    requests: int
    wall: float
    waited: float
    apply: float
    rejected: int = 0
    separate_wall: float | None = None

    @staticmethod
    def per_s(records: int, seconds: float | None) -> float | None:
        return records / seconds if seconds else None


class ApplyTimer:
    """A checkpoint hook that sums the time from each window's arrival to its commit."""

    def __init__(self) -> None:
        self.total = 0.0
        self._since: float | None = None

    def __call__(self, step: str) -> None:
        if step == "after_read":
            self._since = time.perf_counter()
        elif step == "after_commit" and self._since is not None:
            self.total += time.perf_counter() - self._since
            self._since = None


async def _bench(url: str, records: int) -> Bench:
    bench = await make_bench(url)
    bench.emulator.seed_crm(companies=records, seed=42)
    return bench


async def rate_limited(database: str, url: str, records: int) -> Row:
    """The measured run: limiter on, simulated clock, bucket full from the start."""
    bench = await _bench(url, records)
    try:
        clock = ManualClock(start=bench.emulator.clock.now())
        clock.listeners.append(bench.emulator.clock.advance)
        bench.emulator.set_limits(rate=RATE, burst=BURST, enabled=True, reset=True)
        profile = profile_for(rate=RATE, burst=BURST)
        full = MemoryLedger(BucketState(level=profile.cap, updated_at=clock.now()))
        governor = RateGovernor(profile, clock=clock, ledger=full)
        client = RestClient(
            bench.http,
            f"{BASE}/rest/",
            connector_id=CONNECTOR,
            auth=bench.client.auth,
            governor=governor,
            clock=clock,
        )
        mapping = bench.mappings.entities["crm.company"]
        timer = ApplyTimer()
        since = len(bench.emulator.log)
        started = time.perf_counter()
        stats = await Backfiller(client, bench.engine, bench.mappings, checkpoint=timer).entity(
            mapping
        )
        wall = time.perf_counter() - started
        return Row(
            database,
            stats.records,
            len(bench.emulator.log) - since,
            wall,
            sum(clock.sleeps),
            timer.total,
            rejected=bench.emulator.portal().limits.rejected,
        )
    finally:
        await bench.http.aclose()
        bench.engine.dispose()


async def limiter_off(url: str, records: int) -> float:
    """The check run: emulator limiter disabled, no governor, real clock; wall seconds."""
    bench = await _bench(url, records)
    try:
        bench.emulator.set_limits(enabled=False, reset=True)
        mapping = bench.mappings.entities["crm.company"]
        started = time.perf_counter()
        await Backfiller(bench.client, bench.engine, bench.mappings).entity(mapping)
        return time.perf_counter() - started
    finally:
        await bench.http.aclose()
        bench.engine.dispose()


def databases(names: list[str], tmp: Path) -> tuple[list[tuple[str, str]], list[ServerDatabase]]:
    """(name, url) per reachable database; server databases to drop afterwards."""
    found: list[tuple[str, str]] = []
    made: list[ServerDatabase] = []
    for name in names:
        if name == "sqlite":
            found.append(("sqlite", f"sqlite:///{tmp / 'bench.db'}"))
            continue
        db = server_database(name)
        if db.url is None:
            print(f"skipping {name}: {db.error}", file=sys.stderr)
            continue
        made.append(db)
        found.append((name, db.url))
    return found, made


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    print(
        f"\nbackfill of crm.company; rate-limit bound = {RECORDS_PER_REQUEST:,} records/request"
        f" x {RATE:g} requests/s = {BOUND:,.0f} records/s\n"
    )
    head = (
        f"{'database':<11}{'records':>8}{'requests':>9}{'waits s':>9}{'wall s':>8}"
        f"{'limited rec/s':>14}{'of bound':>9}{'no-limit rec/s':>15}{'apply rec/s':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        limited = Row.per_s(r.records, r.wall + r.waited) or 0.0
        print(
            f"{r.database:<11}{r.records:>8,}{r.requests:>9}{r.waited:>9.1f}{r.wall:>8.1f}"
            f"{limited:>14,.0f}{limited / BOUND:>9.1%}{_num(Row.per_s(r.records, r.wall)):>15}"
            f"{_num(Row.per_s(r.records, r.apply)):>12}"
        )
    for r in rows:
        if r.separate_wall is not None:
            print(
                f"{r.database}: separate limiter-off run: {r.separate_wall:.1f} s, "
                f"{_num(Row.per_s(r.records, r.separate_wall))} records/s"
            )
        if r.rejected:
            print(f"{r.database}: warning: {r.rejected} request(s) got QUERY_LIMIT_EXCEEDED")
    print(
        "\nwaits = simulated governor waits (0.5 s per request with a full bucket); "
        "limited = records / (wall + waits); apply = window arrival to commit only."
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        help=f"companies to seed per database (default {DEFAULT_RECORDS:,}: two full requests)",
    )
    parser.add_argument(
        "--databases",
        default=os.environ.get("B24_BENCH_DATABASES", "sqlite,postgresql"),
        help="comma-separated: sqlite, postgresql, mariadb (servers as in tests/databases.py)",
    )
    parser.add_argument(
        "--separate-run",
        action="store_true",
        help="also time a real limiter-off run per database (doubles the time)",
    )
    args = parser.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        names = [n.strip() for n in args.databases.split(",") if n.strip()]
        found, made = databases(names, Path(tmp))
        try:
            for name, url in found:
                _reset(name, url, Path(tmp))
                rows.append(await rate_limited(name, url, args.records))
                if args.separate_run:
                    _reset(name, url, Path(tmp))
                    rows[-1].separate_wall = await limiter_off(url, args.records)
                print(f"{name}: done in {rows[-1].wall:.1f} s", file=sys.stderr)
        finally:
            for db in made:
                db.drop()
    print_table(rows)


def _reset(name: str, url: str, tmp: Path) -> None:
    if name == "sqlite":
        (tmp / "bench.db").unlink(missing_ok=True)
        return
    from tests.databases import wipe

    wipe(url)


if __name__ == "__main__":
    asyncio.run(main())
