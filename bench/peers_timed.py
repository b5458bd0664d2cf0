"""Reading N companies on a real clock: ours and the peers, the emulator in its own process.

    .venv/bin/python bench/peers_timed.py [--records 100000] [--latency 0,1] [--json]

One emulator (``python -m connector emulator --tls``, its real leaky-bucket limiter at
2 requests/s, burst 50) holds N seeded companies. For each ``--latency`` (seconds added
to every request's answer, as a real portal takes about a second for 50 list pages) and
for each reader, the bucket starts empty (a reader after a quiet spell: the burst of 50
is there for everyone) and the reader takes every company, timed by the wall clock:

1. ours: ``RestClient`` with its rate governor, as ``backfill`` reads — one probe for
   the highest ID, then ``backfill.RANGES`` ID ranges read concurrently, each a chain of
   ``filter[>ID]`` windows with 50 pages per ``batch`` request;
2. ``fast-bitrix24`` ``get_all`` (webhook; default pool and pacing);
3. ``b24pysdk`` ``as_list_fast()`` (OAuth; its defaults).

Each reader's IDs are checked against the store's (a mismatch is printed and fails the
run); the requests and 503 answers are counted from the emulator's log. Figures: wall
seconds, records/s, the share of the 5,000 records/s bound (2,500 records per request at
2 requests/s; with the burst a short read can beat it), and each peer's time as a ratio
of ours (> 1: the peer is slower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.emulator_process import EmulatorProcess, control_post, emulator_process  # noqa: E402
from bench.peers import our_client, read_b24pysdk, read_fast_bitrix24  # noqa: E402
from connector.adapters.rate_governor import RateGovernor  # noqa: E402
from connector.core.id_ranges import split_ranges  # noqa: E402
from connector.core.id_window import IdWindow, row_id  # noqa: E402
from connector.core.rate_bucket import BucketProfile  # noqa: E402
from connector.service.backfill import RANGES  # noqa: E402

RATE, BURST = 2.0, 50
BOUND = 2500 * RATE
SELECT = ["ID", "TITLE"]


@dataclass
class Timed:
    reader: str
    latency_s: float
    records: int = 0
    ids_match: bool = False
    wall_s: float = 0.0
    records_per_s: float = 0.0
    of_bound: float = 0.0
    requests: int = 0
    refused_503: int = 0
    ratio_to_ours: float = 0.0
    failure: str = ""


def app_of(emu: EmulatorProcess) -> dict[str, Any]:
    """The printed app as a token answer (what the peers and our flow start from)."""
    return {
        "access_token": emu.access_token,
        "refresh_token": emu.refresh_token,
        "expires_in": 3600,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "domain": emu.base_url.removeprefix("https://"),
    }


def read_ours(base_url: str, app: dict[str, Any], ca: Path) -> list[Mapping[str, Any]]:
    """As ``backfill`` reads: the highest-ID probe, then concurrent ID-range chains."""

    async def run() -> list[Mapping[str, Any]]:
        verify = ssl.create_default_context(cafile=str(ca))
        async with httpx.AsyncClient(verify=verify, timeout=60) as http:
            governor = RateGovernor(BucketProfile(rate=RATE, burst=BURST))
            client = our_client(http, base_url, app, governor)
            top_page = await client.call(
                "crm.company.list", {"order": {"ID": "DESC"}, "select": ["ID"], "start": -1}
            )
            rows_top = top_page.result or []
            top = row_id(rows_top[0]) if rows_top else 0

            async def chain(lo: int, hi: int) -> list[Mapping[str, Any]]:
                window = IdWindow("crm.company.list", {"select": SELECT, "filter": {"<=ID": hi}})
                got: list[Mapping[str, Any]] = []
                async for page in client.iter_pages(window, after=lo, batched=True):
                    got.extend(page)
                    if row_id(page[-1]) >= hi:
                        break
                return got

            spans = split_ranges(0, top, RANGES, 2500)
            parts = await asyncio.gather(*(chain(s.lo, s.hi) for s in spans))
            return [row for part in parts for row in part]

    return asyncio.run(run())


def timed(
    emu: EmulatorProcess,
    name: str,
    latency: float,
    expected: set[int],
    read: Callable[[], list[Mapping[str, Any]]],
) -> Timed:
    result = Timed(name, latency)
    verify = str(emu.ca_pem)
    with httpx.Client(verify=verify, timeout=30) as http:
        since = int(http.get(f"{emu.base_url}/_emulator/state").json()["requests"])
        http.post(f"{emu.base_url}/_emulator/limits", json={"reset": True}).raise_for_status()
    started = time.perf_counter()
    rows: list[Mapping[str, Any]] = []
    try:
        rows = read()
    except Exception as exc:  # a reader failing is a result to report
        result.failure = f"{type(exc).__name__}: {exc}"[:300]
    result.wall_s = round(time.perf_counter() - started, 2)
    ids = [int(r["ID"]) for r in rows]
    result.records = len(ids)
    result.ids_match = len(ids) == len(expected) and set(ids) == expected
    with httpx.Client(verify=verify, timeout=60) as http:
        log = http.get(f"{emu.base_url}/_emulator/log", params={"since": since}).json()
    rest = [e for e in log if e["kind"] in ("rest", "webhook")]
    result.requests = len(rest)
    result.refused_503 = sum(1 for e in rest if e["status"] == 503)
    if result.wall_s > 0:
        result.records_per_s = round(result.records / result.wall_s)
        result.of_bound = round(result.records_per_s / BOUND, 3)
    return result


async def seed(emu: EmulatorProcess, count: int) -> set[int]:
    async with httpx.AsyncClient(verify=str(emu.ca_pem), timeout=600) as http:
        await control_post(http, emu.base_url, "limits", {"enabled": False})
        made = await control_post(http, emu.base_url, "seed", {"companies": count})
        await control_post(http, emu.base_url, "limits", {"enabled": True, "reset": True})
    return {int(i) for i in made["company"]}


def measure(records: int, latencies: list[float]) -> dict[str, Any]:
    results: list[Timed] = []
    with (
        tempfile.TemporaryDirectory() as folder,
        emulator_process(Path(folder), RATE, BURST, tls=True) as emu,
    ):
        assert emu.ca_pem is not None
        os.environ["REQUESTS_CA_BUNDLE"] = str(emu.ca_pem)  # b24pysdk (requests)
        os.environ["SSL_CERT_FILE"] = str(emu.ca_pem)  # fast-bitrix24 (aiohttp)
        expected = asyncio.run(seed(emu, records))
        app = app_of(emu)
        for latency in latencies:
            with httpx.Client(verify=str(emu.ca_pem)) as http:
                http.post(
                    f"{emu.base_url}/_emulator/faults", json={"delay": latency}
                ).raise_for_status()
            readers: list[tuple[str, Callable[[], list[Mapping[str, Any]]]]] = [
                ("ours (backfill's reader)", lambda: read_ours(emu.base_url, app, emu.ca_pem)),
                ("fast-bitrix24 get_all", lambda: read_fast_bitrix24(emu.webhook_url)),
                ("b24pysdk as_list_fast", lambda: read_b24pysdk(emu.base_url, app)),
            ]
            row = [timed(emu, name, latency, expected, read) for name, read in readers]
            ours = row[0].wall_s
            for r in row:
                r.ratio_to_ours = round(r.wall_s / ours, 2) if ours else 0.0
            results += row
    return {
        "records": records,
        "rate": RATE,
        "burst": BURST,
        "bound_records_per_s": BOUND,
        "readers": [asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency", default="0,1", help="seconds per request, comma list")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.records, [float(x) for x in args.latency.split(",")])
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['records']:,} companies, emulator at {RATE:g} req/s burst {BURST}")
        for r in result["readers"]:
            print(
                f"  {r['reader']:<26} latency {r['latency_s']:g} s: {r['wall_s']:>7.2f} s, "
                f"{r['records_per_s']:>6,} rec/s ({r['of_bound']:.0%} of the bound), "
                f"{r['requests']} requests, {r['refused_503']} × 503, "
                f"{r['ratio_to_ours']}× ours{'' if r['ids_match'] else ' — IDs WRONG'}"
                + (f" — {r['failure']}" if r["failure"] else "")
            )
    return 0 if all(r["ids_match"] for r in result["readers"]) else 1


if __name__ == "__main__":
    sys.exit(main())
