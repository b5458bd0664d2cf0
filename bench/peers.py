"""Read all N companies with our client and with two peer libraries, in one run.

One emulator (``ServerThread``, HTTPS on 127.0.0.1 with a throwaway ``trustme`` CA) holds
N seeded companies. Four readers take every company, one after the other:

1. ours, batched: ``RestClient.iter_pages`` — ID windows (``filter[>ID]``, ``order[ID]``,
   ``start=-1``), up to 50 pages chained through ``$result`` in one ``batch`` request;
2. ours, unbatched: the same ID windows, one page per request;
3. ``fast-bitrix24`` ``get_all("crm.company.list", ...)`` (webhook): a counted first
   page, then ``start=50, 100, ...`` offset pages packed into batches of 50;
4. ``b24pysdk`` ``as_list_fast()`` (OAuth): ``start=-1`` ID windows chained in batches.

For each reader the script checks that the IDs read are exactly the store's IDs (a
mismatch is printed, never hidden) and counts the REST requests the emulator logged
during that reader's phase (a ``batch`` is one request, as the portal bills it). The
cost at the portal is requests ÷ 2 req/s, with no credit for the burst of 50 (a long
export sees the sustained rate), compared with the bound of 2,500 records/request ×
2 req/s = 5,000 records/s. The emulator's rate limiter is off for the run: it would only
slow the readers down, and the requests are counted instead. Our client runs without
its rate governor for the same reason; the peers keep their own pacing as shipped
(fast-bitrix24: a pool of 50 requests, then 2 req/s).

    .venv/bin/python bench/peers.py [--records 10000] [--json]

In-process wall times are printed for information only: they measure this machine and
the emulator, not a real portal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rest_client import RestClient
from connector.core.batch_commands import MAX_COMMANDS
from connector.core.id_window import PAGE_SIZE, IdWindow
from connector.core.oauth_tokens import TokenSet, parse_token_answer
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread, make_tls_files

RATE = 2.0
"""The portal's sustained requests per second (standard plans)."""
BOUND_PER_REQUEST = PAGE_SIZE * MAX_COMMANDS
"""2,500 records: 50 pages of 50 rows in one batch request."""
SELECT = ["ID", "TITLE"]
REST_KINDS = ("rest", "webhook")


@dataclass
class Reading:
    """What one reader did during its phase."""

    reader: str
    technique: str
    records: int = 0
    unique_ids: int = 0
    ids_match: bool = False
    mismatch: str = ""
    requests: int = 0
    batch_requests: int = 0
    list_calls: int = 0
    """Pages asked for: list calls on their own plus list sub-commands inside batches."""
    error_answers: int = 0
    oauth_requests: int = 0
    records_per_request: float = 0.0
    portal_time_s: float = 0.0
    records_per_s_at_limit: float = 0.0
    ratio_to_bound: float = 0.0
    wall_s: float = 0.0
    failure: str = ""


def last_seq(emulator: Emulator) -> int:
    """Sequence number of the newest logged request (0 before any)."""
    with emulator.lock:
        return emulator.log[-1].seq if emulator.log else 0


def phase(
    emulator: Emulator,
    reader: str,
    technique: str,
    expected: list[int],
    read: Callable[[], Iterable[Mapping[str, Any]]],
) -> Reading:
    """Run ``read``, then judge its rows against ``expected`` and the request log."""
    result = Reading(reader, technique)
    since = last_seq(emulator)
    started = time.perf_counter()
    rows: list[Mapping[str, Any]] = []
    try:
        rows = list(read())
    except Exception as exc:  # a peer failing is a result to report, not a crash
        result.failure = f"{type(exc).__name__}: {exc}"[:300]
    result.wall_s = round(time.perf_counter() - started, 2)
    with emulator.lock:
        entries = [e for e in emulator.log if e.seq > since]
        if emulator.log and emulator.log[0].seq > since + 1:
            result.failure += " (the emulator's request log overflowed: counts are low)"
    rest = [e for e in entries if e.kind in REST_KINDS]
    result.requests = len(rest)
    result.batch_requests = sum(1 for e in rest if e.method == "batch")
    result.list_calls = sum(
        1 for e in rest if e.method.endswith(".list") and e.status == 200
    ) + sum(
        1
        for e in rest
        if e.method == "batch"
        for sub in e.sub_calls
        if str(sub.get("method", "")).lower().endswith(".list")
    )
    result.error_answers = sum(1 for e in rest if e.status != 200)
    result.oauth_requests = sum(1 for e in entries if e.kind == "oauth")
    ids = [int(r["ID"]) for r in rows]
    result.records = len(ids)
    result.unique_ids = len(set(ids))
    result.ids_match = len(ids) == len(expected) and set(ids) == set(expected)
    if not result.ids_match:
        missing = sorted(set(expected) - set(ids))
        extra = sorted(set(ids) - set(expected))
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        result.mismatch = (
            f"missing {len(missing)} {missing[:5]}, unexpected {len(extra)} {extra[:5]}, "
            f"repeated {len(repeated)} {repeated[:5]}"
        )
    if result.requests:
        per_request = result.records / result.requests
        result.records_per_request = round(per_request, 1)
        result.portal_time_s = result.requests / RATE
        result.records_per_s_at_limit = round(result.records / result.portal_time_s, 1)
        result.ratio_to_bound = round(per_request / BOUND_PER_REQUEST, 3)
    return result


class MemoryTokens:
    """A token source in memory (the bench needs no database): load, and rotate once."""

    def __init__(self, tokens: TokenSet) -> None:
        self.tokens = tokens

    def load(self) -> TokenSet | None:
        return self.tokens

    def rotate(self, seen_generation: int, exchange: Callable[[TokenSet], TokenSet]) -> TokenSet:
        if self.tokens.generation == seen_generation:
            fresh = exchange(self.tokens)
            self.tokens = replace(fresh, generation=seen_generation + 1)
        return self.tokens


def our_client(
    http: httpx.AsyncClient, base_url: str, app: dict[str, Any], governor: Any = None
) -> RestClient:
    """Our REST client on ``app``'s tokens (kept in memory), optionally with a governor."""
    host = base_url.removeprefix("https://")
    tokens = MemoryTokens(parse_token_answer(host, app, datetime.now(UTC)))
    flow = OAuthFlow(
        tokens,
        http=http,
        oauth_url=base_url,
        client_id=app["client_id"],
        client_secret=app["client_secret"],
    )
    return RestClient(
        http,
        base_url + "/rest/",
        connector_id="bench",
        auth=flow,
        governor=governor,
        rng=random.Random(0),
    )


def read_ours(
    base_url: str, app: dict[str, Any], ca: Path, *, batched: bool
) -> list[Mapping[str, Any]]:
    """Our stack: the OAuth flow and ``RestClient.iter_pages`` (no rate governor)."""

    async def run() -> list[Mapping[str, Any]]:
        verify = ssl.create_default_context(cafile=str(ca))
        rows: list[Mapping[str, Any]] = []
        async with httpx.AsyncClient(verify=verify, timeout=60) as http:
            client = our_client(http, base_url, app)
            window = IdWindow("crm.company.list", {"select": SELECT})
            async for page in client.iter_pages(window, batched=batched):
                rows.extend(page)
        return rows

    return asyncio.run(run())


def read_fast_bitrix24(webhook_url: str) -> list[Mapping[str, Any]]:
    """``fast_bitrix24.Bitrix(webhook).get_all`` (default pool, rate and batch size)."""
    from fast_bitrix24 import Bitrix

    bitrix = Bitrix(webhook_url, verbose=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = bitrix.get_all("crm.company.list", {"select": SELECT})
    for warning in caught:
        print(f"fast-bitrix24 warned: {warning.message}", file=sys.stderr)
    assert isinstance(rows, list)
    return rows


def read_b24pysdk(base_url: str, app: dict[str, Any]) -> list[Mapping[str, Any]]:
    """``b24pysdk`` ``crm.company.list(...).as_list_fast()`` over OAuth."""
    from b24pysdk import BitrixApp, BitrixToken, Client

    token = BitrixToken(
        domain=base_url.removeprefix("https://"),
        auth_token=app["access_token"],
        refresh_token=app["refresh_token"],
        bitrix_app=BitrixApp(client_id=app["client_id"], client_secret=app["client_secret"]),
    )
    client = Client(token)
    return list(client.crm.company.list(select=SELECT).as_list_fast().result)


def measure(records: int, seed: int) -> dict[str, Any]:
    emulator = Emulator(seed=seed)
    emulator.default_portal.limits.configure(enabled=False)
    started = time.perf_counter()
    expected = emulator.seed_crm(companies=records)["company"]
    seed_s = time.perf_counter() - started
    readings: list[Reading] = []
    with tempfile.TemporaryDirectory() as folder:
        tls = make_tls_files(Path(folder))
        # requests (b24pysdk) reads REQUESTS_CA_BUNDLE; aiohttp (fast-bitrix24) uses the
        # default SSL context, which honours SSL_CERT_FILE.
        os.environ["REQUESTS_CA_BUNDLE"] = str(tls.ca_pem)
        os.environ["SSL_CERT_FILE"] = str(tls.ca_pem)
        with ServerThread(emulator, tls=True, tls_files=tls) as server:
            base = server.base_url
            ours_app = emulator.install_app(scopes=("crm",), base_url=base)
            sdk_app = emulator.install_app(scopes=("crm",), base_url=base)
            hook = emulator.add_webhook(1)
            webhook_url = f"{base}/rest/1/{hook.secret}/"
            plan: list[tuple[str, str, Callable[[], Iterable[Mapping[str, Any]]]]] = [
                (
                    "ours, batched",
                    "ID windows, start=-1, 50 pages chained per batch",
                    lambda: read_ours(base, ours_app, tls.ca_pem, batched=True),
                ),
                (
                    "ours, unbatched",
                    "ID windows, start=-1, one page per request",
                    lambda: read_ours(base, ours_app, tls.ca_pem, batched=False),
                ),
                (
                    "fast-bitrix24 get_all",
                    "counted first page, then start= offsets, 50 per batch",
                    lambda: read_fast_bitrix24(webhook_url),
                ),
                (
                    "b24pysdk as_list_fast",
                    "ID windows, start=-1, chained in batches",
                    lambda: read_b24pysdk(base, sdk_app),
                ),
            ]
            for name, technique, read in plan:
                readings.append(phase(emulator, name, technique, expected, read))
    return {
        "records": records,
        "seed_s": round(seed_s, 2),
        "rate_limit_per_s": RATE,
        "bound_records_per_request": BOUND_PER_REQUEST,
        "bound_records_per_s": BOUND_PER_REQUEST * RATE,
        "emulator_rate_limiter": "off",
        "portal_time_note": "requests / 2 req/s; no credit for the burst",
        "wall_note": "in-process emulator on this machine; not comparable to a real portal",
        "internal_errors": list(emulator.internal_errors),
        "readers": [asdict(r) for r in readings],
    }


def print_table(result: dict[str, Any]) -> None:
    n = result["records"]
    print(
        f"{n:,} companies; emulator rate limiter OFF for this run (requests are counted, "
        "not throttled)."
    )
    print(f"Seeded in {result['seed_s']} s (in-process).")
    print(
        f"Bound: {result['bound_records_per_request']:,} records/request x "
        f"{result['rate_limit_per_s']:g} req/s = {result['bound_records_per_s']:,.0f} records/s."
    )
    print("'at 2 req/s' = requests / 2 s: the sustained rate, no credit for the burst of 50.")
    print()
    header = (
        f"{'reader':<24}{'read':>8}{'IDs ok':>8}{'requests':>10}{'pages':>7}"
        f"{'rec/req':>9}{'at 2 req/s':>12}{'rec/s':>9}{'/bound':>8}{'wall*':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in result["readers"]:
        print(
            f"{r['reader']:<24}{r['records']:>8,}{'yes' if r['ids_match'] else 'NO':>8}"
            f"{r['requests']:>10,}{r['list_calls']:>7,}{r['records_per_request']:>9,.1f}"
            f"{r['portal_time_s']:>11,.1f}s{r['records_per_s_at_limit']:>9,.0f}"
            f"{r['ratio_to_bound']:>8.3f}{r['wall_s']:>7.2f}s"
        )
    print()
    print(
        "* wall = in-process time against the emulator on this machine (for information; "
        "not comparable to a real portal)."
    )
    print("requests = REST requests in the emulator's log for that phase; a batch counts 1.")
    print("pages = list calls asked for, alone or inside batches (ours, batched always chains")
    print("        50; pages past the list's end come back empty).")
    print("Not in the request count: fast-bitrix24 pages by start= offsets with a count on")
    print("every page, which the portal's docs ask to avoid on big lists (seed L2650-2655);")
    print("the emulator does not model that server-side cost.")
    if n % BOUND_PER_REQUEST == 0:
        print(f"Note: {n:,} is a multiple of {BOUND_PER_REQUEST:,}, so ours, batched needs one")
        print("more request to see the list's end (start=-1 gives no count).")
    for r in result["readers"]:
        notes = []
        if r["failure"]:
            notes.append(f"failed: {r['failure']}")
        if not r["ids_match"]:
            notes.append(f"ID mismatch: {r['mismatch']}")
        if r["error_answers"]:
            notes.append(f"{r['error_answers']} error answers")
        if r["oauth_requests"]:
            notes.append(f"{r['oauth_requests']} OAuth token requests (not counted)")
        if notes:
            print(f"{r['reader']}: " + "; ".join(notes))
    if result["internal_errors"]:
        print(f"emulator internal errors: {result['internal_errors'][:3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--records", type=int, default=10_000, help="Companies to seed and read [10000]."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the demo data [0].")
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")
    result = measure(args.records, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    failed = any(not r["ids_match"] for r in result["readers"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
