"""Tokens sealed at rest: no table of the database holds a token in plaintext."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.tables import sync_token
from connector.adapters.store.token_seal import PREFIX, TokenSeal, new_key
from connector.adapters.store.tokens import TokenStore
from connector.core.oauth_tokens import TokenSet
from connector.errors import ConfigError

PORTAL = "seal.bitrix24.test"
SECRETS = ("refresh-secret-0001", "access-secret-0001", "app-secret-0001")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def pair() -> TokenSet:
    refresh, access, app = SECRETS
    return TokenSet(PORTAL, refresh_token=refresh, access_token=access, application_token=app)


def every_stored_text(engine: sa.Engine) -> str:
    """Every value of every table of the database, as one string."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_no_table_holds_a_token_in_plaintext(engine: sa.Engine, tmp_path: Path) -> None:
    """The ERP reads this database: after `auth set` and a rotation it sees ciphertext."""
    store = TokenStore(engine, PORTAL, TokenSeal.for_engine(engine, key_file=tmp_path / "k"))
    store.save(pair())
    store.rotate(0, lambda _: TokenSet(PORTAL, refresh_token="refresh-secret-0002"))

    dump = every_stored_text(engine)
    for secret in (*SECRETS, "refresh-secret-0002"):
        assert secret not in dump
    loaded = store.load()
    assert loaded is not None and loaded.refresh_token == "refresh-secret-0002"
    assert loaded.application_token == "app-secret-0001"


@pytest.mark.backends("sqlite")
def test_the_default_key_file_sits_beside_the_sqlite_file_with_mode_0600(
    engine: sa.Engine,
) -> None:
    store = TokenStore(engine, PORTAL)
    store.save(pair())

    key_file = Path(str(engine.url.database) + ".key")
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert TokenStore(engine, PORTAL).load() == store.load()  # a new process finds the key


def test_a_plaintext_row_from_before_sealing_is_sealed_on_first_read(
    engine: sa.Engine, tmp_path: Path
) -> None:
    store = TokenStore(engine, PORTAL, TokenSeal.for_engine(engine, key_file=tmp_path / "k"))
    with engine.begin() as conn:
        conn.execute(
            sync_token.insert().values(
                portal=PORTAL,
                refresh_token="refresh-secret-0001",
                access_token="access-secret-0001",
                issued_at=sa.func.now(),
            )
        )
    loaded = store.load()

    assert loaded is not None and loaded.refresh_token == "refresh-secret-0001"
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sync_token.c.refresh_token)).scalar_one()
    assert stored.startswith(PREFIX)
    assert "refresh-secret-0001" not in every_stored_text(engine)


@pytest.mark.backends("sqlite")
def test_a_wrong_or_missing_key_is_a_clear_error_not_garbage(
    engine: sa.Engine, tmp_path: Path
) -> None:
    TokenStore(engine, PORTAL, TokenSeal.for_engine(engine, key=new_key())).save(pair())

    with pytest.raises(ConfigError, match="sealed with another key than B24_SECRET_KEY"):
        TokenStore(engine, PORTAL, TokenSeal.for_engine(engine, key=new_key())).load()
    missing = TokenSeal.for_engine(engine, key_file=tmp_path / "absent.key")
    with pytest.raises(ConfigError, match=r"no key was found.*absent\.key"):
        TokenStore(engine, PORTAL, missing).load()


def test_a_passphrase_works_as_a_key_and_a_short_one_is_refused() -> None:
    url = "sqlite://"
    long = TokenSeal(url, key="correct horse battery staple")
    sealed = long.seal("token-1")
    assert sealed is not None and sealed.startswith(PREFIX)
    assert TokenSeal(url, key="correct horse battery staple").open(sealed) == "token-1"
    with pytest.raises(ConfigError, match="too short"):
        TokenSeal(url, key="short").seal("token-1")
