"""A real ``kill -9`` between the portal write and the local commit, again and again.

The emulator is served on a loopback port from the test process, so it outlives every
pusher; each pusher is a child Python process (:data:`CHILD`) whose checkpoint sends
itself SIGKILL right after a write batch reached the portal, before the local commit.
The test plays the ERP: between rounds it inserts companies (some with a phone) and
edits linked and still-unlinked ones with plain SQL, so the outbox triggers capture
them. A last child runs without the hook; then the portal must hold each ERP record
exactly once (by ``ORIGIN_ID``), with the ERP's values, and nothing may be left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread

REPO = Path(__file__).resolve().parents[2]
CONNECTOR = "erp_crash"
ROUNDS = 22
NEW_PER_ROUND = 3
EVENTS = ("ONCRMCOMPANYADD", "ONCRMCOMPANYUPDATE", "ONCRMCOMPANYDELETE")

CHILD = """
import asyncio, json, os, signal, sys
from pathlib import Path

import httpx

from connector.adapters.mapping_files import load_mappings
from connector.adapters.rest_client import RestClient
from connector.adapters.store.database import make_engine
from connector.service.pusher import Pusher

cfg = json.loads(sys.argv[1])


class StaticToken(httpx.Auth):
    def __init__(self, token):
        self.token = token

    def auth_flow(self, request):
        body = request.read()
        extra = f"auth={self.token}".encode()
        yield httpx.Request(
            request.method,
            request.url,
            headers={"content-type": "application/x-www-form-urlencoded"},
            content=body + b"&" + extra if body else extra,
        )


def checkpoint(step):
    if cfg["kill"] and step == "after_write":
        os.kill(os.getpid(), signal.SIGKILL)


async def main():
    engine = make_engine(cfg["db_url"])
    async with httpx.AsyncClient(timeout=30) as http:
        client = RestClient(
            http,
            cfg["base_url"] + "/rest/",
            connector_id=cfg["connector"],
            auth=StaticToken(cfg["token"]),
        )
        pusher = Pusher(
            client,
            engine,
            load_mappings(Path(cfg["mappings"])),
            cfg["connector"],
            checkpoint=checkpoint,
        )
        stats = await pusher.push_until_empty()
    engine.dispose()
    print(json.dumps(vars(stats)))


asyncio.run(main())
"""


@pytest.fixture
def served() -> Iterator[tuple[Emulator, ServerThread]]:
    emulator = Emulator()
    with ServerThread(emulator) as server:
        yield emulator, server


def run_pusher(cfg: dict[str, Any], *, kill: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({**cfg, "kill": kill})],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Erp:
    """The ERP's side: its own engine and plain SQL, never the connector's code."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.made = 0

    def add_companies(self, count: int, *, phone_every: int = 3) -> list[int]:
        ids = []
        with self.engine.begin() as conn:
            for _ in range(count):
                n = self.made
                self.made += 1
                title = f"Firm {n}"
                conn.execute(
                    sa.text("INSERT INTO erp_company (title, comments) VALUES (:t, :c)"),
                    {"t": title, "c": f"made in the ERP as number {n}"},
                )
                key = conn.execute(
                    sa.text("SELECT id FROM erp_company WHERE title = :t"), {"t": title}
                ).scalar_one()
                if n % phone_every == 0:
                    conn.execute(
                        sa.text(
                            "INSERT INTO erp_company_phone (owner_id, value_type, value) "
                            "VALUES (:o, 'WORK', :v)"
                        ),
                        {"o": key, "v": f"+1 555 {n:04d}"},
                    )
                ids.append(int(key))
        return ids

    def retitle(self, key: int, title: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE erp_company SET title = :t WHERE id = :k"), {"t": title, "k": key}
            )

    def companies(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.text("SELECT id, b24_id, title FROM erp_company ORDER BY id")
                ).mappings()
            ]

    def phones(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.text("SELECT owner_id, b24_value_id, value FROM erp_company_phone")
                ).mappings()
            ]

    def outbox(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.text("SELECT erp_key, status, locked_by, attempts FROM sync_outbox")
                ).mappings()
            ]

    def links(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT erp_key, b24_id FROM sync_link WHERE entity = 'crm.company'")
            ).all()
        return {str(r[0]): int(r[1]) for r in rows}


def portal_companies(emulator: Emulator) -> list[dict[str, Any]]:
    """Every company in the portal that our connector created."""
    with emulator.lock:
        crm = emulator.portal().crm
        records = [crm.get("company", cid) for cid in crm.ids("company")]
    return [r for r in records if r.get("ORIGINATOR_ID") == CONNECTOR]


def duplicated(portal: list[dict[str, Any]]) -> dict[str, int]:
    """ORIGIN_IDs held by more than one portal record, with how many."""
    origins = Counter(str(r["ORIGIN_ID"]) for r in portal)
    return {origin: n for origin, n in origins.items() if n > 1}


def sent_adds_and_lookups(emulator: Emulator) -> tuple[Counter[str], Counter[str]]:
    """From the request log: crm.company.add calls and ORIGIN_ID lookups, per ORIGIN_ID."""
    adds: Counter[str] = Counter()
    lookups: Counter[str] = Counter()
    for entry in emulator.requests():
        for call in entry.sub_calls if entry.method == "batch" else [vars(entry)]:
            params = call["params"]
            if call["method"] == "crm.company.add":
                adds[str(params["fields"]["ORIGIN_ID"])] += 1
            elif call["method"] == "crm.company.list" and "ORIGIN_ID" in params.get("filter", {}):
                lookups[str(params["filter"]["ORIGIN_ID"])] += 1
    return adds, lookups


def bind_offline_events(server: ServerThread, token: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for event in EVENTS:
            answer = http.post(
                "/rest/event.bind",
                data={
                    "auth": token,
                    "event": event,
                    "event_type": "offline",
                    "auth_connector": CONNECTOR,
                },
            )
            assert answer.status_code == 200, answer.text


def test_kill_9_between_portal_write_and_local_commit_makes_no_duplicates(
    served: tuple[Emulator, ServerThread], schema_db_url: str
) -> None:
    """22 pushers, each SIGKILLed after its write batch reached the portal and before the
    local commit, then one clean run: no ORIGIN_ID is ever in the portal twice, each ERP
    company was sent as an add once (its retries looked it up by ORIGIN_ID), every ERP
    row is linked to its portal record with the ERP's title and phone, no outbox row is
    left open, and the connector's offline queue holds nothing of its own writes."""
    emulator, server = served
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    bind_offline_events(server, creds["access_token"])
    cfg = {
        "db_url": schema_db_url,
        "base_url": server.base_url,
        "token": creds["access_token"],
        "connector": CONNECTOR,
        "mappings": str(REPO / "mappings"),
    }
    erp = Erp(schema_db_url)
    rng = random.Random(20240601)
    try:
        in_flight: list[int] = []  # added by the last killed pusher, not committed here
        for n in range(ROUNDS):
            rows = erp.companies()
            linked = [r["id"] for r in rows if r["b24_id"] is not None]
            if linked:
                key = rng.choice(linked)
                erp.retitle(key, f"Firm {key} (edited in round {n})")
            if in_flight:
                key = rng.choice(in_flight)
                erp.retitle(key, f"Firm {key} (edited while in flight, round {n})")
            new = erp.add_companies(NEW_PER_ROUND)

            child = run_pusher(cfg, kill=True)
            assert child.returncode == -signal.SIGKILL, (n, child.returncode, child.stderr)
            portal = portal_companies(emulator)
            assert duplicated(portal) == {}, f"round {n}"
            # the write batch reached the portal; the commit that would link it here did not
            assert {str(k) for k in new} <= {r["ORIGIN_ID"] for r in portal}, f"round {n}"
            unlinked = {r["id"] for r in erp.companies() if r["b24_id"] is None}
            assert set(new) <= unlinked, f"round {n}"
            in_flight = new

        final = run_pusher(cfg, kill=False)
        assert final.returncode == 0, final.stderr
        assert json.loads(final.stdout.strip().splitlines()[-1])["failed"] == 0

        rows = erp.companies()
        assert len(rows) == ROUNDS * NEW_PER_ROUND
        assert all(r["b24_id"] is not None for r in rows), [r for r in rows if not r["b24_id"]]
        portal = portal_companies(emulator)
        assert duplicated(portal) == {}
        assert len(portal) == len(rows)
        # each ERP row was sent as an add once; every retry looked it up by ORIGIN_ID instead
        adds, lookups = sent_adds_and_lookups(emulator)
        assert adds == Counter({str(r["id"]): 1 for r in rows})
        assert set(lookups) == set(adds)
        by_id = {int(r["ID"]): r for r in portal}
        assert {int(r["b24_id"]): r["title"] for r in rows} == {
            i: r["TITLE"] for i, r in by_id.items()
        }
        assert {int(r["b24_id"]): str(r["id"]) for r in rows} == {
            i: r["ORIGIN_ID"] for i, r in by_id.items()
        }
        assert erp.links() == {str(r["id"]): int(r["b24_id"]) for r in rows}

        owner_b24 = {r["id"]: int(r["b24_id"]) for r in rows}
        phones = erp.phones()
        assert len(phones) == len(range(0, ROUNDS * NEW_PER_ROUND, 3))
        for phone in phones:
            [theirs] = by_id[owner_b24[phone["owner_id"]]]["PHONE"]
            assert theirs["VALUE"] == phone["value"]
            assert phone["b24_value_id"] == int(theirs["ID"])

        outbox = erp.outbox()
        assert [r for r in outbox if r["status"] != "done"] == []
        assert [r for r in outbox if r["locked_by"] is not None] == []

        assert emulator.queue_state() == []
        # the binding is live: a change the connector did not make is queued for it
        emulator.ui_update("crm.company", next(iter(by_id)), {"COMMENTS": "from the UI"})
        assert [r["EVENT_NAME"] for r in emulator.queue_state()] == ["ONCRMCOMPANYUPDATE"]
    finally:
        erp.engine.dispose()
