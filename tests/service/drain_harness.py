"""A drain test bench: the in-process emulator, a REST client on it, a migrated database."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from connector.adapters.mapping_files import load_mappings
from connector.adapters.rest_client import RestClient
from connector.adapters.store import migrate
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_schema import sync_erp_schema
from connector.core.mapping_model import MappingSet
from connector.emulator.app import Emulator
from connector.service.drainer import Checkpoint, Drainer

REPO = Path(__file__).resolve().parents[2]
BASE = "https://emulator.bitrix24.test"
CONNECTOR = "erp_test"
EVENTS = [
    f"ONCRM{e}{a}"
    for e in ("COMPANY", "CONTACT", "LEAD", "DEAL")
    for a in ("ADD", "UPDATE", "DELETE")
]


class StaticToken(httpx.Auth):
    """Adds ``auth=<token>`` to the form body (the OAuth flow is tested on its own)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = request.read()
        extra = f"auth={self.token}".encode()
        request = httpx.Request(
            request.method,
            request.url,
            headers={"content-type": "application/x-www-form-urlencoded"},
            content=body + b"&" + extra if body else extra,
        )
        yield request


class Crash(Exception):
    """A simulated process death at a named step."""


@dataclass
class Bench:
    emulator: Emulator
    engine: sa.Engine
    mappings: MappingSet
    http: httpx.AsyncClient
    client: RestClient

    def drainer(
        self,
        crash_at: str | None = None,
        *,
        crash_on: int = 1,
        limit: int | None = None,
        portal: Any = None,
    ) -> Drainer:
        """A drainer that dies at the ``crash_on``-th time it reaches step ``crash_at``."""
        reached = 0

        def checkpoint(step: str) -> None:
            nonlocal reached
            if step == crash_at:
                reached += 1
                if reached == crash_on:
                    raise Crash(step)

        hook: Checkpoint = checkpoint
        extra = {} if limit is None else {"limit": limit}
        return Drainer(
            portal or self.client, self.engine, self.mappings, CONNECTOR, checkpoint=hook, **extra
        )

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY b24_id")).mappings()
            ]

    def queue(self) -> list[dict[str, Any]]:
        return self.emulator.queue_state()

    def rest_calls(self) -> int:
        return len(self.emulator.requests())


async def make_bench(db_url: str, *, bind: bool = True) -> Bench:
    emulator = Emulator()
    creds = emulator.install_app(scopes=("crm", "pull", "user"))
    engine = make_engine(db_url)
    mappings = load_mappings(REPO / "mappings")
    if migrate.current_revision(engine) != migrate.head_revision():  # a bare db_url
        migrate.upgrade(engine)
        sync_erp_schema(engine, mappings)
    http = emulator.client(BASE)
    client = RestClient(
        http, f"{BASE}/rest/", connector_id=CONNECTOR, auth=StaticToken(creds["access_token"])
    )
    for event in EVENTS if bind else ():
        await client.call("event.bind", {"event": event, "event_type": "offline"})
    return Bench(emulator, engine, mappings, http, client)
