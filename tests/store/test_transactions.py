"""Transactions are real on every database, SQLite included (savepoints nest inside them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.adapters.store import migrate
from connector.adapters.store.database import lock_for_write, make_engine, write_transaction
from connector.adapters.store.tables import sync_state


class Boom(Exception):
    pass


def _keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(sync_state.c.key)).scalars())


def _row(key: str) -> dict[str, object]:
    from datetime import UTC, datetime

    return {"key": key, "value": None, "updated_at": datetime.now(UTC)}


@pytest.mark.parametrize("opener", ["begin", "write_transaction"])
def test_a_released_savepoint_rolls_back_with_its_transaction(db_url: str, opener: str) -> None:
    """Work done in a savepoint that was released is still undone when the outer
    transaction fails — the drain's 'apply the batch in one transaction' depends on it."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    begin = engine.begin if opener == "begin" else (lambda: write_transaction(engine))
    with pytest.raises(Boom), begin() as conn:
        with conn.begin_nested():
            conn.execute(sync_state.insert().values(**_row("inside-savepoint")))
        conn.execute(sync_state.insert().values(**_row("after-savepoint")))
        raise Boom
    assert _keys(engine) == []
    engine.dispose()


def test_lock_for_write_commits_what_it_began(db_url: str) -> None:
    """lock_for_write opens the transaction (BEGIN IMMEDIATE on SQLite); commit keeps it."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        lock_for_write(conn)
        conn.execute(sync_state.insert().values(**_row("kept")))
        conn.commit()
    assert _keys(engine) == ["kept"]
    engine.dispose()


def test_a_new_sqlite_file_is_created_private(tmp_path: Path) -> None:
    """The file holds the connector's tokens: 0600 from its first byte, WAL files alike."""
    import stat

    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sync_state.insert().values(**_row("k")))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    engine.dispose()
    assert modes["c.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes
