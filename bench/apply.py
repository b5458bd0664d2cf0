"""Local apply throughput: portal records into the ERP tables, by table size, per backend.

Run from the checkout: ``.venv/bin/python bench/apply.py [--sizes 1000,10000,100000]
[--db URL] [--json]``.

No portal is involved: this is the ceiling the database side puts on backfill and the
drain. Records shaped as ``crm.company.list`` returns them (ID, TITLE, COMMENTS,
DATE_MODIFY, one PHONE and one EMAIL with value IDs) go through the production apply
path (``ErpWriter.apply_many`` inside ``write_transaction``) in windows of 500, one
transaction each (a backfill's 2,500-record batch is one transaction of five such
chunks). The clock runs only inside each window's apply and commit: the records are
built before it starts, as a read hands them over. For each size the database starts
empty (a fresh SQLite file, or a scratch database ``bench_apply_<hex>`` on the server
given by ``--db``, dropped afterwards) and the figures are records/s over the whole load
and over its last tenth (``tail``: the cost per record when the table is already large).
``flat`` is the per-record cost at the largest size over the smallest's; the goal is
≤ 1.3.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from connector.adapters.mapping_files import load_mappings  # noqa: E402
from connector.adapters.startup_heap import freeze_startup_heap  # noqa: E402
from connector.adapters.store import migrate  # noqa: E402
from connector.adapters.store.database import make_engine, write_transaction  # noqa: E402
from connector.adapters.store.erp_schema import sync_erp_schema  # noqa: E402
from connector.adapters.store.erp_writer import ErpWriter  # noqa: E402

WINDOW = 500


def record(n: int) -> dict[str, Any]:
    return {
        "ID": str(n),
        "TITLE": f"Company {n}",
        "COMMENTS": f"note {n}",
        "DATE_MODIFY": "2026-12-01T10:00:00+03:00",
        "PHONE": [{"ID": str(2 * n), "VALUE": f"+1 555 {n:07d}", "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"ID": str(2 * n + 1), "VALUE": f"c{n}@example.test", "VALUE_TYPE": "WORK"}],
    }


class Scratch:
    """A fresh database for one measurement."""

    def __init__(self, server: str | None) -> None:
        self.server = server
        self.tmp = tempfile.TemporaryDirectory()
        self.name = f"bench_apply_{uuid.uuid4().hex[:8]}"
        if server is None:
            self.url = f"sqlite:///{self.tmp.name}/bench.db"
            return
        admin = make_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        admin.dispose()
        self.url = str(sa.make_url(server).set(database=self.name).render_as_string(False))

    def drop(self) -> None:
        if self.server is not None:
            admin = make_engine(self.server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {self.name}")
            admin.dispose()
        self.tmp.cleanup()


def measure(size: int, server: str | None) -> dict[str, Any]:
    scratch = Scratch(server)
    try:
        engine = make_engine(scratch.url)
        mappings = load_mappings(REPO / "mappings")
        migrate.upgrade(engine)
        sync_erp_schema(engine, mappings)
        writer = ErpWriter(mappings)
        mapping = mappings.entities["crm.company"]
        now = datetime.now(UTC)
        tail_from = size - max(WINDOW, size // 10)
        freeze_startup_heap()  # as the verbs do once composed (once per process)
        total = tail = 0.0  # seconds inside the apply and its commit, windows summed
        for first in range(1, size + 1, WINDOW):
            items = [(n, record(n), None) for n in range(first, min(first + WINDOW, size + 1))]
            started = time.perf_counter()  # the records exist already, as a read gives them
            with write_transaction(engine) as conn:
                writer.apply_many(conn, mapping, items, now=now)
            took = time.perf_counter() - started
            total += took
            if first - 1 >= tail_from:
                tail += took
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM erp_company")).scalar_one()
        engine.dispose()
        assert rows == size, (rows, size)
        tail_n = size - tail_from
        return {
            "size": size,
            "seconds": round(total, 2),
            "rec_s": round(size / total),
            "tail_rec_s": round(tail_n / tail),
        }
    finally:
        scratch.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--db", default=None, help="server URL (postgresql://… / mysql://…)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from connector.settings import normalize_database_url

    server = normalize_database_url(args.db) if args.db else None
    results = [measure(size, server) for size in sizes]
    flat = (results[0]["rec_s"] / results[-1]["tail_rec_s"]) if len(results) > 1 else 1.0
    backend = sa.make_url(server).get_backend_name() if server else "sqlite"
    report = {"backend": backend, "results": results, "flat": round(flat, 2)}
    if args.json:
        print(json.dumps(report))
        return
    print(f"apply on {backend} (windows of {WINDOW}, crm.company with a phone and an e-mail)")
    for r in results:
        print(
            f"  {r['size']:>7} records: {r['rec_s']:>6} rec/s overall, "
            f"{r['tail_rec_s']:>6} rec/s over the last tenth ({r['seconds']} s)"
        )
    print(f"  per-record cost, largest tail / smallest: {flat:.2f}x (goal <= 1.3)")


if __name__ == "__main__":
    main()
