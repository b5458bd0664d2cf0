"""Settings, read from the environment and then ``.env`` (pydantic-settings).

The names are a contract (``../shared/DESIGN.md``): ``B24_PORTAL_URL``,
``B24_CLIENT_ID``, ``B24_CLIENT_SECRET``, ``B24_OAUTH_URL``, ``B24_CONNECTOR_ID``,
``B24_DATABASE_URL``, ``B24_MAPPINGS_DIR``, ``B24_RATE_LIMIT``, ``B24_RATE_BURST``,
``B24_METRICS_PORT``. Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///connector.db"
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info"

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
_KNOWN_BACKENDS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")


def _check_http_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{name} must be an http(s) URL with a host, like https://example.bitrix24.com"
        )
    return value.rstrip("/")


def normalize_database_url(value: str) -> str:
    """Check a database URL and pick the driver we ship for its backend.

    ``postgresql://`` becomes ``postgresql+psycopg://`` (psycopg 3) and ``mysql://`` or
    ``mariadb://`` becomes ``mysql+pymysql://``; an explicit driver is kept.
    Raises ``ValueError`` with a message that does not repeat the URL (it may hold a
    password).
    """
    from sqlalchemy.engine import make_url  # local import: settings stay light to import
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "B24_DATABASE_URL is not a database URL; expected e.g. sqlite:///connector.db "
            "or postgresql://user@host/db"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in _KNOWN_BACKENDS:
        raise ValueError(
            f"B24_DATABASE_URL uses unsupported backend {backend!r}; "
            "use sqlite, postgresql or mysql/mariadb"
        )
    if backend != "sqlite" and not url.host and not url.query.get("host"):
        raise ValueError(f"B24_DATABASE_URL for {backend} needs a host")
    if backend != "sqlite" and not url.database:
        raise ValueError(f"B24_DATABASE_URL for {backend} needs a database name")
    if not driver and backend in _DRIVERS:
        url = url.set(drivername=_DRIVERS[backend])
    elif backend in ("mariadb", "postgres"):
        url = url.set(drivername=_DRIVERS[backend].split("+")[0] + "+" + driver)
    return url.render_as_string(hide_password=False)


class Settings(BaseSettings):
    """All settings of the connector; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="B24_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    portal_url: str | None = Field(
        default=None, description="Portal base URL, https://x.bitrix24.com"
    )
    client_id: str | None = Field(default=None, description="OAuth client_id of the local app")
    client_secret: SecretStr | None = Field(default=None, description="OAuth client_secret")
    refresh_token: SecretStr | None = Field(
        default=None, description="auth set: the refresh token (instead of stdin or argv)"
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Key sealing the tokens in sync_token (Fernet key or passphrase)"
    )
    secret_key_file: Path | None = Field(
        default=None, description="File holding that key (default: beside the SQLite file)"
    )
    oauth_url: str = Field(default=DEFAULT_OAUTH_URL, description="OAuth server base URL")
    connector_id: str = Field(default="b24connector", description="auth_connector key")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy URL")
    mappings_dir: Path = Field(default=Path("mappings"), description="Folder of mapping YAML files")
    rate_limit: float = Field(default=2.0, gt=0, description="Portal leak rate, requests/s")
    rate_burst: int = Field(default=50, ge=1, description="Portal bucket size, requests")
    http_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a REST call may take before it is given up and retried",
    )
    clock_skew: float = Field(
        default=5.0,
        ge=0,
        description="newer_wins: edits closer than this many seconds are a conflict",
    )
    queue_limit: int = Field(
        default=500,
        ge=1,
        description="records per event.offline.get (the source has no cap; 50 is the default)",
    )
    worker_lease: float = Field(
        default=30.0,
        ge=1,
        description="run: seconds a worker's heartbeat lease lasts; past it, peers adopt its work",
    )
    journal_keep_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "run: hours a cleared queue batch stays in sync_journal (keep it longer than a "
            "backfill window takes: the window checks newer entries for live events)"
        ),
    )
    outbox_keep_days: float = Field(
        default=7.0, gt=0, description="run: days a done sync_outbox row stays (outbox list)"
    )
    prune_interval: float = Field(
        default=3600.0, gt=0, description="run: seconds between prunes of the journal and outbox"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Loopback port for /healthz and /metrics"
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the health/metrics server listens on"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="run: log lines as text (key=value details) or JSON"
    )

    @field_validator("portal_url")
    @classmethod
    def _portal_url(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _check_http_url(value, "B24_PORTAL_URL")

    @field_validator("oauth_url")
    @classmethod
    def _oauth_url(cls, value: str) -> str:
        return _check_http_url(value, "B24_OAUTH_URL")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("connector_id")
    @classmethod
    def _connector_id(cls, value: str) -> str:
        if not value or len(value) > 64 or not all(c.isalnum() or c in "_-." for c in value):
            raise ValueError("B24_CONNECTOR_ID must be 1-64 letters, digits, '_', '-' or '.'")
        return value

    def require_portal(self) -> tuple[str, str, SecretStr]:
        """Return (portal URL, client id, secret) or raise ConfigError naming what is missing."""
        missing = [
            name
            for name, value in (
                ("B24_PORTAL_URL", self.portal_url),
                ("B24_CLIENT_ID", self.client_id),
                ("B24_CLIENT_SECRET", self.client_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set; put it in the environment or .env")
        assert self.portal_url and self.client_id and self.client_secret
        return self.portal_url, self.client_id, self.client_secret


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; turn a validation failure into one ConfigError line.

    The message names the variable (``B24_DATABASE_URL: ...``) and never echoes a
    secret value.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        var = f"B24_{field.upper()}"
        reason = str(first["msg"]).removeprefix("Value error, ")
        if reason.startswith(var):
            raise ConfigError(reason) from None
        raise ConfigError(f"{var}: {reason}") from None
