"""Locks through the database: one listener per connector with takeover, and per-record
order between workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.adapters.store.db_locks import ListenerLock, RecordLocks
from connector.errors import StoreError


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def kill_session_of(lock: ListenerLock, engine: sa.Engine) -> None:
    """What the server sees when the holder's process dies: its session ends."""
    assert lock._conn is not None
    if engine.dialect.name == "postgresql":
        pid = lock._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    else:
        ident = lock._conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        with engine.connect() as other:
            other.execute(sa.text(f"KILL {int(ident)}"))


@pytest.mark.backends("postgresql", "mariadb")
def test_one_listener_per_connector_and_a_peer_takes_over_when_it_dies(
    engine: sa.Engine,
) -> None:
    a = ListenerLock(engine, "erp_test")
    b = ListenerLock(engine, "erp_test")
    other_connector = ListenerLock(engine, "another")

    assert a.try_acquire() is True
    assert b.try_acquire() is False
    assert other_connector.try_acquire() is True  # each connector has its own listener

    kill_session_of(a, engine)
    assert a.held() is False  # the holder notices it lost the lock
    assert b.try_acquire() is True
    assert a.try_acquire() is False
    b.release()
    assert a.try_acquire() is True
    a.release()
    other_connector.release()


@pytest.mark.backends("postgresql", "mariadb")
def test_two_batches_naming_the_same_record_run_one_after_the_other(engine: sa.Engine) -> None:
    locks = RecordLocks(engine, "erp_test")
    first = locks.acquire([("crm.company", 2), ("crm.company", 1)])
    got: list[str] = []

    def second_batch() -> None:
        held = locks.acquire([("crm.company", 3), ("crm.company", 2)])
        got.append("second")
        locks.release(held)

    thread = threading.Thread(target=second_batch)
    thread.start()
    thread.join(timeout=0.5)
    assert thread.is_alive() and got == []  # waits for record 2
    disjoint = locks.acquire([("crm.company", 4)])  # other records do not wait
    locks.release(disjoint)
    locks.release(first)
    thread.join(timeout=10)
    assert got == ["second"]


@pytest.mark.backends("sqlite")
def test_sqlite_is_single_worker_so_its_locks_are_always_granted(engine: sa.Engine) -> None:
    assert ListenerLock(engine, "erp_test").try_acquire() is True
    assert ListenerLock(engine, "erp_test").try_acquire() is True
    assert RecordLocks(engine, "erp_test").acquire([("crm.company", 1)]) is None


@pytest.mark.backends("postgresql", "mariadb")
def test_a_window_of_thousands_of_records_is_locked_whole_and_a_refusal_names_the_records(
    engine: sa.Engine,
) -> None:
    """1,200 records (more than one MariaDB statement's worth) are all held: a peer
    wanting any of them, the first, the last or one in between, is refused after its
    timeout with an error naming the records, and holds none of its own afterwards."""
    locks = RecordLocks(engine, "erp_test")
    window = [("crm.company", i) for i in range(1, 1201)]
    held = locks.acquire(window)
    try:
        for wanted in (1, 777, 1200):
            with pytest.raises(StoreError) as refused:
                locks.acquire([("crm.company", 5000 + wanted), ("crm.company", wanted)], 0.2)
            assert "crm.company" in str(refused.value) and refused.value.transient
            free = locks.acquire([("crm.company", 5000 + wanted)], 0.2)  # released whole
            locks.release(free)
    finally:
        locks.release(held)
    again = locks.acquire(window[-3:], 0.2)  # all free once the holder released
    locks.release(again)
