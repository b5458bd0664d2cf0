"""Draining a backlog of queued portal changes, on a real clock, at the portal's limit.

Run from the checkout: ``.venv/bin/python bench/backlog.py [--changes 5000,50000]
[--limits 500,50] [--latency 0] [--db URL] [--json]``.

The emulator runs in its own process with its real limiter (2 requests/s, burst 50).
For each size, the offline events are bound for our connector, the emulator seeds that
many companies as a UI user (one ONCRMCOMPANYADD queue record each), and the timed part
is ``Drainer.drain_until_empty()`` over HTTP with the connector's rate governor, its
bucket starting **full** (the steady state after a long outage: every request waits its
0.5 s). Figures: records/s, REST calls per record (counted at the emulator), 503s seen,
and the peak RSS of the connector side during the measurement (``bench/peak_rss.py``),
each measurement in a process of its own.
A steady drain is one request per batch whatever its size (the fetch carries the
previous clear and the next get), so the bound is ``limit`` × 2 records per second at 2
requests/s; the goals are ≥ 500 records/s and ≤ 0.005 calls per record at the default
``limit`` 500, ≤ 0.04 at 50.
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
from connector.core.rate_bucket import BucketProfile  # noqa: E402
from connector.service.drainer import Drainer  # noqa: E402
from tests.service.drain_harness import StaticToken  # noqa: E402

CONNECTOR = "bench_backlog"
EVENTS = ("ONCRMCOMPANYADD", "ONCRMCOMPANYUPDATE", "ONCRMCOMPANYDELETE")
RATE, BURST = 2.0, 50


async def one_run(changes: int, limit: int, latency: float, db: str) -> dict[str, Any]:
    peak_rss.reset()  # this measurement's peak, not the largest of the script's so far
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (
            emulator_process(folder, RATE, BURST) as emulator,
            scratch_database(db, folder, "bench_backlog") as (backend, url),
        ):
            engine = make_engine(url)
            mappings = load_mappings(REPO / "mappings")
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
                for event in EVENTS:
                    await plain.call("event.bind", {"event": event, "event_type": "offline"})
                await seed_companies(http, base, changes)
                profile = BucketProfile(rate=RATE, burst=BURST)
                governor = RateGovernor(profile)
                client = RestClient(
                    http,
                    f"{base}/rest/",
                    connector_id=CONNECTOR,
                    auth=StaticToken(emulator.access_token),
                    governor=governor,
                )
                await fill_buckets(client, control, profile.cap)
                if latency:
                    await control_post(http, base, "faults", {"delay": latency})
                since = (await control.limits())["requests_logged"]
                drainer = Drainer(client, engine, mappings, CONNECTOR, limit=limit)
                started = time.perf_counter()
                freeze_startup_heap()  # as the verbs do once composed (inside the clock)
                stats = await drainer.drain_until_empty()
                seconds = time.perf_counter() - started
                log = await control.log(since)
                left = len(await control.queue())
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM erp_company")).scalar_one()
            engine.dispose()
    calls = len(log)
    return {
        "backend": backend,
        "changes": changes,
        "limit": limit,
        "latency_s": latency,
        "seconds": round(seconds, 1),
        "rec_s": round(changes / seconds),
        "bound_rec_s": round(limit * RATE),  # one request per batch
        "calls": calls,
        "calls_per_record": round(calls / changes, 4),
        "http_503": sum(1 for e in log if e.get("status") == 503),
        "peak_rss_mb": round(peak_rss.peak_mb()),
        "ok": stats.inserted == changes == rows and left == 0,
    }


def main() -> None:
    limit_arenas()  # as the CLI does before any thread: the RSS is the connector's
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", default="5000,50000")
    parser.add_argument("--limits", default="500,50")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # changes,limit: in this process
    args = parser.parse_args()
    if args.one:
        n, limit = args.one.split(",")
        print(json.dumps(asyncio.run(one_run(int(n), int(limit), args.latency, args.db))))
        return
    results = [  # each measurement in a process of its own: its peak RSS is its own
        peak_rss.in_own_process(
            __file__, "--one", f"{n},{limit}", "--latency", str(args.latency), "--db", args.db
        )
        for n in args.changes.split(",")
        for limit in args.limits.split(",")
    ]
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(
            f"{r['backend']:<10} {r['changes']:>6} changes, limit {r['limit']:>3}: "
            f"{r['rec_s']:>5} rec/s ({r['rec_s'] / r['bound_rec_s']:.0%} of {r['bound_rec_s']}), "
            f"{r['calls']} calls = {r['calls_per_record']} per record, "
            f"{r['http_503']} x 503, {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB"
            f"{'' if r['ok'] else '  CHECK FAILED'}"
        )
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
