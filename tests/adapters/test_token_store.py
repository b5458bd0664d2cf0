"""The token store: round trip, single-flight rotation, and a real two-process refresh race."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.tokens import TokenStore
from connector.core.oauth_tokens import TokenSet
from connector.errors import AuthRevokedError

PORTAL = "race.bitrix24.test"


@pytest.fixture
def store(db_url: str) -> Iterator[TokenStore]:
    """A token store on an upgraded, empty database; its engine is disposed afterwards."""
    engine = make_engine(db_url)
    upgrade(engine)
    yield TokenStore(engine, PORTAL)
    engine.dispose()


def first_pair() -> TokenSet:
    issued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return TokenSet(
        portal=PORTAL,
        refresh_token="refresh-0",
        access_token="access-0",
        issued_at=issued,
        expires_at=issued + timedelta(hours=1),
        member_id="m1",
        scope="crm,pull",
        client_endpoint="https://race.bitrix24.test/rest/",
    )


def test_save_and_load_round_trip(store: TokenStore) -> None:
    """What `auth set` stores comes back equal, with aware UTC times; re-saving bumps it."""
    assert store.load() is None

    saved = store.save(first_pair())
    loaded = store.load()

    assert saved == loaded
    assert loaded is not None and loaded.generation == 0
    assert first_pair().expires_at == loaded.expires_at
    assert store.save(first_pair()).generation == 1


def test_rotate_spends_once_and_stores_the_new_pair(store: TokenStore) -> None:
    """The current generation rotates: exchange runs once; the new pair is persisted."""
    store.save(first_pair())
    spent: list[str] = []

    def exchange(current: TokenSet) -> TokenSet:
        spent.append(current.refresh_token)
        return TokenSet(portal="ignored", refresh_token="refresh-1", access_token="access-1")

    fresh = store.rotate(0, exchange)

    assert spent == ["refresh-0"]
    assert (
        fresh.generation,
        fresh.refresh_token,
        fresh.access_token,
    ) == (1, "refresh-1", "access-1")
    assert fresh.member_id == "m1"  # kept from the old row when the answer lacks it
    assert fresh == store.load()


def test_stale_generation_joins_the_winner(store: TokenStore) -> None:
    """A caller that saw an older generation gets the stored pair and spends nothing."""
    store.save(first_pair())
    store.rotate(0, lambda cur: TokenSet(PORTAL, "refresh-1", "access-1"))

    def must_not_run(current: TokenSet) -> TokenSet:
        raise AssertionError("the refresh token was spent twice")

    joined = store.rotate(0, must_not_run)

    assert (joined.refresh_token, joined.generation) == ("refresh-1", 1)


def test_failed_exchange_writes_nothing_and_frees_the_lock(store: TokenStore) -> None:
    """If the refresh fails nothing changes, and the next rotation can take the lock."""
    store.save(first_pair())

    def failing(current: TokenSet) -> TokenSet:
        raise RuntimeError("oauth down")

    with pytest.raises(RuntimeError):
        store.rotate(0, failing)
    assert first_pair().refresh_token == (store.load() or first_pair()).refresh_token

    fresh = store.rotate(0, lambda cur: TokenSet(PORTAL, "refresh-1", "access-1"))
    assert fresh.generation == 1


def test_rotate_without_tokens_asks_for_auth_set(store: TokenStore) -> None:
    """No row for the portal: AuthRevokedError telling the operator to run auth set."""

    with pytest.raises(AuthRevokedError, match="auth set"):
        store.rotate(0, lambda cur: cur)


def _race_worker(db_url: str, barrier: Any, spend_log: str, results: Any) -> None:
    """One worker process: waits at the barrier, then refreshes generation 0."""
    engine = make_engine(db_url)
    store = TokenStore(engine, PORTAL)
    name = f"p{os.getpid()}"

    def exchange(current: TokenSet) -> TokenSet:
        with open(spend_log, "a", encoding="utf-8") as fh:
            fh.write(f"{current.refresh_token} {name}\n")
        time.sleep(0.5)  # hold the lock long enough for the other process to arrive
        return TokenSet(PORTAL, refresh_token=f"refresh-{name}", access_token=f"access-{name}")

    barrier.wait()
    fresh = store.rotate(0, exchange)
    engine.dispose()
    results.put((fresh.refresh_token, fresh.access_token, fresh.generation))


def test_two_processes_racing_a_refresh_spend_the_token_once(
    store: TokenStore, db_url: str, tmp_path: Path
) -> None:
    """Two worker processes refresh at once: one spends the token, both end on its pair."""
    store.save(first_pair())
    spend_log = tmp_path / "spent.txt"
    spend_log.touch()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_race_worker, args=(db_url, barrier, str(spend_log), results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    spends = spend_log.read_text(encoding="utf-8").splitlines()
    assert len(spends) == 1
    assert spends[0].startswith("refresh-0 ")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2] == 1
    stored = store.load()
    assert stored is not None and outcomes[0][0] == stored.refresh_token
    assert all(worker.exitcode == 0 for worker in workers)
