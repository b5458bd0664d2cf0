"""Read N records through ID-window batched paging and compare with the rate-limit bound.

An in-process emulator (``httpx.ASGITransport``) holds N companies; the real client stack
(OAuth flow on a SQLite token store, rate governor, ``RestClient.list_all``) reads them
all with ``order[ID]=ASC``, ``filter[>ID]=…``, ``start=-1`` and up to 50 chained pages per
``batch`` request. The bound at the portal's rate limit is 2,500 records per request ×
requests per second; the script prints the requests used and the sustained records/s at
the limit as a share of that bound (time here is the governor's: a request costs 1/rate
seconds once the burst is spent, which is what a long export sees).

    .venv/bin/python bench/paging.py [--records 5000] [--pages 50] [--rate 2] [--json]

The wall-clock figure is the emulator's own speed, for information only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rate_governor import RateGovernor
from connector.adapters.rest_client import RestClient
from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.tokens import TokenStore
from connector.core.batch_commands import MAX_COMMANDS
from connector.core.client_clock import ManualClock
from connector.core.id_window import PAGE_SIZE, IdWindow
from connector.core.oauth_tokens import parse_token_answer
from connector.core.rate_bucket import BucketProfile
from connector.emulator.app import Emulator
from connector.emulator.clock import Clock as EmulatorClock

BASE = "https://emulator.bitrix24.test"
HOST = "emulator.bitrix24.test"


class SharedClock(EmulatorClock):
    """The emulator reads the governor's clock, so both agree on time."""

    def __init__(self, source: ManualClock) -> None:
        super().__init__()
        self.source = source

    def now(self) -> float:
        return self.source.now()

    def monotonic(self) -> float:
        return self.source.now()

    def advance(self, seconds: float) -> None:
        self.source.time += seconds


async def measure(records: int, pages: int, rate: float, burst: int) -> dict[str, Any]:
    clock = ManualClock(start=time.time())
    emulator = Emulator(clock=SharedClock(clock), rate_limit=rate, rate_burst=burst)
    app = emulator.install_app(scopes=("crm",))
    made = emulator.seed_crm(companies=records)["company"]
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(engine)
        store = TokenStore(engine, HOST)
        store.save(parse_token_answer(HOST, app, datetime.now(UTC)))
        profile = BucketProfile(rate=rate, burst=burst)
        governor = RateGovernor(profile, clock=clock)
        async with emulator.client(BASE) as http:
            flow = OAuthFlow(
                store,
                http=http,
                oauth_url=BASE,
                client_id=app["client_id"],
                client_secret=app["client_secret"],
            )
            client = RestClient(
                http,
                BASE + "/rest/",
                connector_id="bench",
                auth=flow,
                governor=governor,
                clock=clock,
                rng=random.Random(0),
            )
            window = IdWindow("crm.company.list", {"select": ["ID", "TITLE"]})
            started_wall = time.perf_counter()
            rows: list[Any] = []
            async for page in client.iter_pages(window, pages_per_request=pages):
                rows.extend(page)
            wall_s = time.perf_counter() - started_wall
        engine.dispose()
    if [int(r["ID"]) for r in rows] != made:
        raise SystemExit("paging lost or repeated records: the bench result is void")
    requests = client.requests_sent
    limit_answers = emulator.default_portal.limits.rejected
    sustained_s = requests / rate  # each request costs 1/rate once the burst is spent
    per_request = records / requests if requests else 0.0
    bound_per_request = PAGE_SIZE * MAX_COMMANDS
    return {
        "records": records,
        "pages_per_request": pages,
        "rate_limit_per_s": rate,
        "requests": requests,
        "records_per_request": round(per_request, 1),
        "records_per_s_at_limit": round(records / sustained_s, 1) if requests else 0.0,
        "bound_records_per_s": bound_per_request * rate,
        "ratio_to_bound": round(per_request / bound_per_request, 3),
        "limit_answers": limit_answers,
        "wall_s": round(wall_s, 2),
        "wall_records_per_s": round(records / wall_s, 1) if wall_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000, help="Records to read [5000].")
    parser.add_argument(
        "--pages",
        type=int,
        default=MAX_COMMANDS,
        help="Chained pages per batch request, 1..50 [50].",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="Portal requests/s [2].")
    parser.add_argument("--burst", type=int, default=50, help="Portal burst [50].")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.records, args.pages, args.rate, args.burst))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"records read:          {result['records']:,}")
    print(
        f"requests used:         {result['requests']} "
        f"({result['records_per_request']:,} records/request, "
        f"{result['pages_per_request']} pages/request)"
    )
    print(
        f"records/s at {args.rate:g} req/s: {result['records_per_s_at_limit']:,} "
        f"of a bound of {result['bound_records_per_s']:,.0f} "
        f"(ratio {result['ratio_to_bound']:.3f})"
    )
    print(f"limit answers (503):   {result['limit_answers']}")
    if result["records"] % (PAGE_SIZE * result["pages_per_request"]) == 0:
        print("note: the last request only found the list's end (start=-1 gives no count,")
        print("      so a full last page needs one more look); the ratio tends to 1 as N grows")
    print(
        f"wall time (emulator):  {result['wall_s']} s "
        f"({result['wall_records_per_s']:,} records/s in-process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
