"""`b24-connector auth set` and `auth status`: tokens stored, facts shown, tokens never printed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.tokens import TokenStore
from connector.service.cli import main
from connector.service.commands.auth import describe

HOST = "acme.bitrix24.test"
REFRESH = "refresh-token-value-123"
ACCESS = "access-token-value-456"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An upgraded SQLite database and the B24_* settings pointing at it (nothing else)."""
    for key in list(os.environ):
        if key.startswith("B24_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("B24_DATABASE_URL", url)
    monkeypatch.setenv("B24_PORTAL_URL", f"https://{HOST}")
    monkeypatch.setenv("B24_CLIENT_ID", "local.app")
    monkeypatch.setenv("B24_CLIENT_SECRET", "client-secret-789")
    yield url


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def stored(url: str) -> TokenStore:
    return TokenStore(make_engine(url), HOST)


def test_set_stores_the_pair(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """auth set writes both tokens for the portal's host and never echoes them."""
    code, out, err = run(
        ["auth", "set", "--refresh-token", REFRESH, "--access-token", ACCESS], capsys
    )

    assert code == 0
    assert err.startswith("warning: a token in argv")  # and nothing else, no token
    assert REFRESH not in err and ACCESS not in err
    assert HOST in out and "generation 0" in out
    assert REFRESH not in out and ACCESS not in out
    store = stored(database)
    tokens = store.load()
    store.engine.dispose()
    assert tokens is not None
    assert (tokens.refresh_token, tokens.access_token) == (REFRESH, ACCESS)


def test_set_again_bumps_generation_and_keeps_portal_facts(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second auth set replaces the pair, bumps the generation, keeps member id and scope."""
    store = stored(database)
    run(["auth", "set", "--refresh-token", "old"], capsys)
    first = store.load()
    assert first is not None
    store.save(replace(first, member_id="m-1", scope="crm,pull"))

    code, out, _ = run(["auth", "set", "--refresh-token", REFRESH], capsys)
    tokens = store.load()
    store.engine.dispose()

    assert code == 0
    assert "first portal call will refresh" in out
    assert tokens is not None
    assert (
        tokens.refresh_token,
        tokens.access_token,
        tokens.member_id,
        tokens.scope,
        tokens.generation,
    ) == (REFRESH, None, "m-1", "crm,pull", 2)


def test_status_shows_facts_not_tokens(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """auth status --json gives portal, scopes, age and expiry, and no token text."""
    store = stored(database)
    run(["auth", "set", "--refresh-token", REFRESH, "--access-token", ACCESS], capsys)
    tokens = store.load()
    assert tokens is not None
    store.save(
        replace(
            tokens,
            scope="crm,pull",
            member_id="m-1",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    )
    store.engine.dispose()

    code, out, _ = run(["auth", "status", "--json"], capsys)
    report = json.loads(out)

    assert code == 0
    assert REFRESH not in out and ACCESS not in out
    assert report["portal"] == HOST
    assert report["scopes"] == ["crm", "pull"]
    assert report["access_token"] == "present"
    assert 0 < report["expires_in_s"] <= 1800
    assert report["age_s"] >= 0

    code, text, _ = run(["auth", "status"], capsys)
    assert code == 0
    assert "crm, pull" in text and REFRESH not in text and ACCESS not in text


def test_status_without_tokens_says_what_to_run(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No tokens yet: exit 2 with one line naming `auth set`."""
    code, out, err = run(["auth", "status"], capsys)

    assert code == 2
    assert out == ""
    assert "auth set" in err and len(err.strip().splitlines()) == 1


def test_set_without_portal_settings_names_them(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing B24_PORTAL_URL: exit 2 naming the variable."""
    monkeypatch.delenv("B24_PORTAL_URL")

    code, _, err = run(["auth", "set", "--refresh-token", REFRESH], capsys)

    assert code == 2
    assert "B24_PORTAL_URL" in err
    assert REFRESH not in err


def test_set_rejects_an_empty_token(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty refresh token is a usage error, not a stored row."""
    code, _, err = run(["auth", "set", "--refresh-token", "  "], capsys)

    assert code == 2
    assert "refresh-token" in err


def test_describe_states() -> None:
    """No access token, an expired one and human durations read well."""
    from connector.core.oauth_tokens import TokenSet

    now = datetime(2026, 1, 1, tzinfo=UTC)
    none = describe(TokenSet(HOST, "r", issued_at=now - timedelta(days=2, hours=3)), now)
    expired = describe(
        TokenSet(HOST, "r", "a", issued_at=now, expires_at=now - timedelta(seconds=90)), now
    )

    assert "none" in none["access_token"] and none["age"] == "2d 3h"
    assert "expired" in expired["access_token"] and expired["expires_in"] == "-1m 30s"
    assert expired["age"] == "0s" and none["expires_in"] is None


def test_set_reads_the_token_from_stdin_a_file_or_the_environment(
    database: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The token stays out of argv: piped in, from --refresh-token-file, or from
    B24_REFRESH_TOKEN; each is stored, none is echoed, and none warns."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(REFRESH + "\n"))
    code, out, err = run(["auth", "set"], capsys)
    assert code == 0 and REFRESH not in out + err and "warning" not in err
    tokens = stored(database).load()
    assert tokens is not None and tokens.refresh_token == REFRESH

    secret = tmp_path / "token.txt"
    secret.write_text("from-a-file\n")
    assert run(["auth", "set", "--refresh-token-file", str(secret)], capsys)[0] == 0
    tokens = stored(database).load()
    assert tokens is not None and tokens.refresh_token == "from-a-file"

    monkeypatch.setenv("B24_REFRESH_TOKEN", "from-the-env")
    assert run(["auth", "set"], capsys)[0] == 0
    tokens = stored(database).load()
    assert tokens is not None and tokens.refresh_token == "from-the-env"


def test_set_with_the_token_in_argv_warns(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--refresh-token T still works (the documented form) but says where T now is."""
    code, _, err = run(["auth", "set", "--refresh-token", REFRESH], capsys)
    assert code == 0
    assert "shell" in err and "history" in err and REFRESH not in err


def test_a_piped_token_wins_over_b24_refresh_token(
    database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-authorising after invalid_grant by piping the new token must not store the old
    one still sitting in the environment or .env."""
    import io

    monkeypatch.setenv("B24_REFRESH_TOKEN", "old-revoked")
    monkeypatch.setattr("sys.stdin", io.StringIO("brand-new\n"))
    assert run(["auth", "set"], capsys)[0] == 0
    tokens = stored(database).load()
    assert tokens is not None and tokens.refresh_token == "brand-new"
