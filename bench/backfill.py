"""Backfill throughput on a real clock, the emulator in its own process, at the portal's limit.

Run from the checkout: ``.venv/bin/python bench/backfill.py [--records 50000]
[--latency 0,1] [--db sqlite] [--db postgresql://…] [--json]``.

Per database and per latency: the emulator (``python -m connector emulator``, real
leaky-bucket limiter, 2 requests/s burst 50) seeds ``--records`` companies; the offline
events are bound for our connector beforehand (as ``backfill`` does on a portal it
already knows), the emulator's bucket and the governor's are filled to the governor's cap
(the steady state of a long run: every request waits its 0.5 s, no burst to flatter a
short run), ``--latency`` seconds are added to every request's answer (a real portal
takes about a second for 50 list pages), and the timed
part is the whole ``run_backfill`` of crm.company over HTTP with the connector's rate
governor: the one start-up request (feature checks, bindings check and the highest-ID
probe in one batch) included.

The bound is 50 chained pages x 50 rows per batch request x 2 requests/s = 5,000
records/s; the table shows records/s and the share of it. Goals: ≥ 90 % without latency
and ≥ 80 % with 1 s, 50k and 100k records, SQLite and PostgreSQL. Also printed: the REST
requests the emulator logged and its 503s (the governor must keep them at 0), and the
peak RSS of the connector side during each measurement (``bench/peak_rss.py``); each
measurement runs in a process of its own, so what an earlier one left on the heap does
not count in the next one's peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench import peak_rss  # noqa: E402
from bench.emulator_process import (  # noqa: E402
    Control,
    control_post,
    emulator_process,
    fill_buckets,
    scratch_database,
    seed_companies,
)
from connector.adapters.malloc_arenas import limit_arenas  # noqa: E402
from connector.adapters.mapping_files import load_mappings  # noqa: E402
from connector.adapters.rate_governor import RateGovernor  # noqa: E402
from connector.adapters.rest_client import RestClient  # noqa: E402
from connector.adapters.startup_heap import freeze_startup_heap  # noqa: E402
from connector.adapters.store import migrate  # noqa: E402
from connector.adapters.store.database import make_engine  # noqa: E402
from connector.adapters.store.erp_schema import sync_erp_schema  # noqa: E402
from connector.core.batch_commands import Command  # noqa: E402
from connector.core.rate_bucket import BucketProfile  # noqa: E402
from connector.service.backfill import run_backfill  # noqa: E402
from connector.service.bindings import BindingReport, ensure_bindings  # noqa: E402
from tests.service.drain_harness import StaticToken  # noqa: E402

CONNECTOR = "bench_backfill"
RATE, BURST = 2.0, 50
BOUND = 50 * 50 * RATE  # records/s


async def one_run(records: int, latency: float, db: str) -> dict[str, Any]:
    peak_rss.reset()  # this measurement's peak, not the largest of the script's so far
    mappings = load_mappings(REPO / "mappings")
    only = type(mappings)({"crm.company": mappings.entities["crm.company"]})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (
            emulator_process(folder, RATE, BURST) as emulator,
            scratch_database(db, folder, "bench_backfill") as (backend, url),
        ):
            engine = make_engine(url)
            migrate.upgrade(engine)
            sync_erp_schema(engine, mappings)
            async with httpx.AsyncClient(timeout=120) as http:
                base = emulator.base_url
                control = Control(http, base)
                plain = RestClient(
                    http,
                    f"{base}/rest/",
                    connector_id=CONNECTOR,
                    auth=StaticToken(emulator.access_token),
                )
                await ensure_bindings(plain, only, CONNECTOR)
                await seed_companies(http, base, records)
                if latency:
                    await control_post(http, base, "faults", {"delay": latency})
                client = RestClient(
                    http,
                    f"{base}/rest/",
                    connector_id=CONNECTOR,
                    auth=StaticToken(emulator.access_token),
                    governor=RateGovernor(BucketProfile(rate=RATE, burst=BURST)),
                )

                await fill_buckets(client, control, BucketProfile(rate=RATE, burst=BURST).cap)

                async def bindings(probes: list[Command]) -> BindingReport:
                    return await ensure_bindings(client, only, CONNECTOR, probes=probes)

                since = (await control.limits())["requests_logged"]
                started = time.perf_counter()
                freeze_startup_heap()  # as the verbs do once composed (inside the clock)
                stats = await run_backfill(
                    client,
                    engine,
                    only,
                    entities=["crm.company"],
                    bindings=bindings,
                    connector_id=CONNECTOR,  # as `backfill` runs: with the record locks
                )
                seconds = time.perf_counter() - started
                log = await control.log(since)
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM erp_company")).scalar_one()
            engine.dispose()
    rec_s = records / seconds
    return {
        "backend": backend,
        "records": records,
        "latency_s": latency,
        "seconds": round(seconds, 1),
        "rec_s": round(rec_s),
        "of_bound": round(rec_s / BOUND, 3),
        "requests": len(log),
        "http_503": sum(1 for e in log if e.get("status") == 503),
        "peak_rss_mb": round(peak_rss.peak_mb()),
        "ok": stats.entities["crm.company"].inserted == records == rows,
    }


def main() -> None:
    limit_arenas()  # as the CLI does before any thread: the RSS is the connector's
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="50000")
    parser.add_argument("--latency", default="0,1", help="seconds per request, comma list")
    parser.add_argument("--db", action="append", help="sqlite or a server URL (repeatable)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # records,latency,db: in this process
    args = parser.parse_args()
    if args.one:
        n, lat, db = args.one.split(",", 2)
        print(json.dumps(asyncio.run(one_run(int(n), float(lat), db))))
        return
    results = [  # each measurement in a process of its own: its peak RSS is its own
        peak_rss.in_own_process(__file__, "--one", f"{n},{lat},{db}")
        for db in args.db or ["sqlite"]
        for n in args.records.split(",")
        for lat in args.latency.split(",")
    ]
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(
                f"{r['backend']:<10} {r['records']:>6} records, latency {r['latency_s']:g} s: "
                f"{r['rec_s']:>5} rec/s = {r['of_bound']:.0%} of {BOUND:g}, "
                f"{r['requests']} requests, {r['http_503']} x 503, {r['seconds']} s, "
                f"peak RSS {r['peak_rss_mb']} MB{'' if r['ok'] else '  CHECK FAILED'}"
            )
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
