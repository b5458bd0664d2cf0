"""Settings: the B24_* names, defaults, validation messages that name the variable."""

from __future__ import annotations

import pytest

from connector.errors import ConfigError
from connector.settings import load_settings, normalize_database_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    """No B24_* variable or .env file from the developer's shell leaks into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("B24_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_defaults_match_the_design_card() -> None:
    """Without configuration: SQLite file, oauth.bitrix.info, mappings/, 2 req/s burst 50."""
    s = load_settings()
    assert s.database_url == "sqlite:///connector.db"
    assert s.oauth_url == "https://oauth.bitrix.info"
    assert str(s.mappings_dir) == "mappings"
    assert (s.rate_limit, s.rate_burst) == (2.0, 50)
    assert s.portal_url is None and s.metrics_port is None


def test_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every B24_* variable of DESIGN.md lands in its field."""
    env = {
        "B24_PORTAL_URL": "https://acme.bitrix24.com/",
        "B24_CLIENT_ID": "local.abc",
        "B24_CLIENT_SECRET": "s3cr3t",
        "B24_OAUTH_URL": "http://127.0.0.1:9000",
        "B24_CONNECTOR_ID": "erp_main",
        "B24_DATABASE_URL": "postgresql://u@db.local/erp",
        "B24_MAPPINGS_DIR": "/etc/b24/mappings",
        "B24_RATE_LIMIT": "5",
        "B24_RATE_BURST": "250",
        "B24_METRICS_PORT": "9108",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.portal_url == "https://acme.bitrix24.com"
    assert s.client_id == "local.abc"
    assert s.client_secret is not None and s.client_secret.get_secret_value() == "s3cr3t"
    assert s.oauth_url == "http://127.0.0.1:9000"
    assert s.connector_id == "erp_main"
    assert s.database_url == "postgresql+psycopg://u@db.local/erp"
    assert str(s.mappings_dir) == "/etc/b24/mappings"
    assert (s.rate_limit, s.rate_burst, s.metrics_port) == (5.0, 250, 9108)


def test_dotenv_file_is_read(tmp_path: object) -> None:
    """A .env in the working directory supplies settings the environment lacks."""
    from pathlib import Path

    Path(".env").write_text("B24_CONNECTOR_ID=from_dotenv\n", encoding="utf-8")
    assert load_settings().connector_id == "from_dotenv"


def test_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client secret never appears when settings are printed or logged."""
    monkeypatch.setenv("B24_CLIENT_SECRET", "very-secret-value")
    s = load_settings()
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("B24_PORTAL_URL", "acme.bitrix24.com"),
        ("B24_PORTAL_URL", "ftp://acme.bitrix24.com"),
        ("B24_OAUTH_URL", "oauth.bitrix.info"),
        ("B24_DATABASE_URL", "not a url"),
        ("B24_DATABASE_URL", "oracle://scott@db/orcl"),
        ("B24_DATABASE_URL", "postgresql:///nohost"),
        ("B24_RATE_LIMIT", "0"),
        ("B24_CONNECTOR_ID", "has space"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """A malformed setting raises ConfigError (exit 2) whose one line starts with its name."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(var), message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_database_password_is_not_echoed_in_errors() -> None:
    """A rejected database URL's message does not repeat a password it contained."""
    with pytest.raises(ValueError) as info:
        normalize_database_url("oracle://scott:tiger@db/orcl")
    assert "tiger" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///connector.db", "sqlite:///connector.db"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("mysql://root@h/test", "mysql+pymysql://root@h/test"),
        ("mariadb://root@h/test", "mysql+pymysql://root@h/test"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2://u@h/d"),
    ],
)
def test_database_driver_is_chosen_for_the_backend(given: str, expected: str) -> None:
    """Plain backend names get the driver we ship; an explicit driver is kept."""
    assert normalize_database_url(given) == expected


def test_require_portal_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that talk to the portal list the missing variables in one message."""
    monkeypatch.setenv("B24_CLIENT_ID", "local.x")
    with pytest.raises(ConfigError, match="B24_PORTAL_URL, B24_CLIENT_SECRET not set"):
        load_settings().require_portal()


def test_http_timeout_and_housekeeping_settings_reach_their_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``B24_HTTP_TIMEOUT`` bounds every REST call of the portal session (connect at most
    10 s); the keep and prune settings are read as numbers."""
    from connector.service.wiring import http_timeout

    default = http_timeout(load_settings())
    assert (default.read, default.connect) == (30.0, 10.0)
    monkeypatch.setenv("B24_HTTP_TIMEOUT", "2.5")
    monkeypatch.setenv("B24_JOURNAL_KEEP_HOURS", "0.5")
    monkeypatch.setenv("B24_OUTBOX_KEEP_DAYS", "1")
    monkeypatch.setenv("B24_PRUNE_INTERVAL", "60")
    s = load_settings()
    short = http_timeout(s)
    assert (short.read, short.write, short.connect) == (2.5, 2.5, 2.5)
    assert (s.journal_keep_hours, s.outbox_keep_days, s.prune_interval) == (0.5, 1.0, 60.0)
    assert http_timeout(s, quick=True).read == 1.5
    monkeypatch.setenv("B24_HTTP_TIMEOUT", "0")
    with pytest.raises(ConfigError, match="B24_HTTP_TIMEOUT"):
        load_settings()
