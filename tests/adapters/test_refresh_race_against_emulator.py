"""Two worker processes, one expired token, the emulator's real OAuth server: one refresh.

The emulator runs on a loopback port; each process has its own RestClient, OAuthFlow and
TokenStore on the shared database. Both calls meet ``expired_token`` at once; the token
store's row lock lets exactly one of them spend the refresh token, and the other uses
the winner's pair. The emulator would answer a second spend with ``invalid_grant``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rest_client import RestClient
from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.tokens import TokenStore
from connector.core.oauth_tokens import parse_token_answer
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread

HOST = "emulator.bitrix24.test"


async def _call_once(
    db_url: str, base_url: str, client_id: str, secret: str, barrier: Any
) -> tuple[str, int]:
    engine = make_engine(db_url)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            flow = OAuthFlow(
                TokenStore(engine, HOST),
                http=http,
                oauth_url=base_url,
                client_id=client_id,
                client_secret=secret,
            )
            client = RestClient(http, base_url + "/rest/", connector_id="erp", auth=flow)
            await flow.current()  # load the stored (expired) pair before the race
            await asyncio.to_thread(barrier.wait)
            answer = await client.call("server.time")
            tokens = await flow.current()
            return str(answer.result), tokens.generation
    finally:
        engine.dispose()


def _worker(
    db_url: str, base_url: str, client_id: str, secret: str, barrier: Any, results: Any
) -> None:
    """One worker process: load the pair, wait for the other, call the portal."""
    try:
        results.put(("ok", *asyncio.run(_call_once(db_url, base_url, client_id, secret, barrier))))
    except Exception as exc:  # report, do not hang the parent
        results.put(("error", type(exc).__name__, str(exc)))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An upgraded, empty database; disposed afterwards."""
    made = make_engine(db_url)
    upgrade(made)
    yield made
    made.dispose()


def test_two_processes_refresh_an_expired_token_once(engine: Engine, db_url: str) -> None:
    """Both processes' calls succeed; the OAuth server saw one refresh and no invalid_grant."""
    emulator = Emulator()
    with ServerThread(emulator) as server:
        app = emulator.install_app(scopes=("crm",), base_url=server.base_url)
        TokenStore(engine, HOST).save(parse_token_answer(HOST, app, datetime.now(UTC)))
        emulator.expire_tokens()
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        workers = [
            ctx.Process(
                target=_worker,
                args=(
                    db_url,
                    server.base_url,
                    app["client_id"],
                    app["client_secret"],
                    barrier,
                    results,
                ),
            )
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=90) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)

    refreshes = [
        e
        for e in emulator.log
        if e.kind == "oauth" and e.params.get("grant_type") == "refresh_token"
    ]
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    assert [o[2] for o in outcomes] == [1, 1]
    assert len(refreshes) == 1
    assert [e.error for e in refreshes] == [None]
    stored = TokenStore(engine, HOST).load()
    assert stored is not None and stored.generation == 1
