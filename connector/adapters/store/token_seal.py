"""Tokens sealed at rest: ``sync_token`` holds Fernet ciphertext, never a usable token.

The ERP reads the same database the connector writes, so a token stored in plaintext
would be readable by every ERP client. We seal the secret columns (refresh, access and
application token) with `Fernet` (AES-128-CBC + HMAC-SHA256, from ``cryptography``)
rather than moving the tokens into a file, because with PostgreSQL several workers on
several hosts share one database: the row lock that makes a refresh single-flight
(``tokens.py``) keeps working, and only the key has to be given to every host.

The key, first found wins:

1. ``B24_SECRET_KEY`` — a Fernet key (``b24-connector auth key`` prints a new one) or any
   passphrase of 16+ characters (stretched with HKDF-SHA256);
2. ``B24_SECRET_KEY_FILE`` — a file holding such a key;
3. the default key file: beside a SQLite database (``connector.db`` → ``connector.db.key``),
   else ``$XDG_CONFIG_HOME/b24-connector/<db host>-<db name>.key``.

The default file is created 0600 on the first write of tokens. Values without the
``fernet:`` prefix are an older plaintext store; ``TokenStore`` seals them on first read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine

from connector.errors import ConfigError

__all__ = ["PREFIX", "TokenSeal", "default_key_file", "new_key"]

PREFIX = "fernet:"
_MEMORY_KEYS: dict[str, bytes] = {}  # in-memory SQLite databases: a key per process


def new_key() -> str:
    """A fresh Fernet key (urlsafe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def _as_fernet_key(text: str, origin: str) -> bytes:
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    if len(raw) < 16:
        raise ConfigError(
            f"{origin}: the secret key is too short; use a Fernet key "
            "(b24-connector auth key) or a passphrase of at least 16 characters"
        )
    stretched = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"b24-connector sync_token"
    ).derive(raw)
    return base64.urlsafe_b64encode(stretched)


def default_key_file(engine: Engine) -> Path | None:
    """Where the key lives when no setting names it (None: an in-memory SQLite database)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            return None
        return Path(url.database).resolve().with_name(Path(url.database).name + ".key")
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    name = f"{url.host or 'local'}-{url.database or 'db'}".replace(os.sep, "_")
    return base / "b24-connector" / f"{name}.key"


@dataclass
class TokenSeal:
    """Seals and opens token strings; the key is read (or created) on first use."""

    engine_url: str
    key: str | None = None  # B24_SECRET_KEY
    key_file: Path | None = None  # B24_SECRET_KEY_FILE, else the default file
    _fernet: Fernet | None = None

    @classmethod
    def for_engine(
        cls, engine: Engine, *, key: str | None = None, key_file: Path | None = None
    ) -> TokenSeal:
        return cls(
            engine.url.render_as_string(hide_password=True),
            key=key,
            key_file=key_file or default_key_file(engine),
        )

    @property
    def where(self) -> str:
        """The key's origin, for messages (never the key)."""
        if self.key:
            return "B24_SECRET_KEY"
        return str(self.key_file) if self.key_file else "an in-memory key"

    def seal(self, value: str | None) -> str | None:
        if value is None or value.startswith(PREFIX):
            return value
        return PREFIX + self._cipher(create=True).encrypt(value.encode()).decode()

    def open(self, value: str | None) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return value
        try:
            return self._cipher(create=False).decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"the tokens in sync_token are sealed with another key than {self.where}; "
                "set the key they were stored with, or store new ones: b24-connector auth set"
            ) from None

    def _cipher(self, *, create: bool) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._load_key(create))
        return self._fernet

    def _load_key(self, create: bool) -> bytes:
        if self.key:
            return _as_fernet_key(self.key, "B24_SECRET_KEY")
        if self.key_file is None:
            return _MEMORY_KEYS.setdefault(self.engine_url, Fernet.generate_key())
        path = self.key_file
        if path.exists():
            return _as_fernet_key(path.read_text(), str(path))
        if not create:
            raise ConfigError(
                f"the tokens in sync_token are sealed, and no key was found: set "
                f"B24_SECRET_KEY or B24_SECRET_KEY_FILE (looked for {path})"
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # written whole under a temporary name, then linked into place: a reader never
        # sees a half-written key, and of two processes racing, the first link wins
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(new_key() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use theirs
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
        return _as_fernet_key(path.read_text(), str(path))
