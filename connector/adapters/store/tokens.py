"""The token store on ``sync_token``: one row per portal, rotated single-flight.

A refresh token works once. Two workers that both see an expired access token must not
both spend it: the loser would get ``invalid_grant`` and, worse, might overwrite the
winner's new pair. :meth:`TokenStore.rotate` therefore takes the row lock first —
``SELECT … FOR UPDATE`` on PostgreSQL and MariaDB, ``BEGIN IMMEDIATE`` (the database
write lock) on SQLite — and compares ``generation`` with the one the caller saw. Same
generation: this worker spends the refresh token and writes the new pair in the same
transaction. Higher generation: someone else already rotated; the caller gets that pair
and spends nothing.

The secret columns are sealed at rest (``token_seal.py``): the ERP reading this database
sees ciphertext. A row from before sealing is sealed on its first read.

The store is synchronous; async callers run it in a thread (``asyncio.to_thread``).
:func:`token_facts` reads what ``status`` shows of the row, none of it secret, without
the seal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.store.database import lock_for_write
from connector.adapters.store.db_errors import store_error
from connector.adapters.store.tables import sync_token
from connector.adapters.store.token_seal import PREFIX, TokenSeal
from connector.core.oauth_tokens import TokenSet
from connector.core.portal_answers import AUTH_SET_HINT
from connector.errors import AuthRevokedError, StoreError

__all__ = ["TokenStore", "token_facts"]

log = logging.getLogger(__name__)

Exchange = Callable[[TokenSet], TokenSet]
"""Spends ``current.refresh_token`` at the OAuth server and returns the answer's pair."""


def token_facts(conn: Connection, portal: str) -> dict[str, Any] | None:
    """``issued_at``, ``expires_at``, ``scope`` and ``generation`` of the portal's row as
    stored (no token, nothing unsealed), or None when ``auth set`` was never run."""
    row = (
        conn.execute(
            select(
                sync_token.c.issued_at,
                sync_token.c.expires_at,
                sync_token.c.scope,
                sync_token.c.generation,
            ).where(sync_token.c.portal == portal)
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


class TokenStore:
    """Tokens of one portal (``portal`` is the portal's host name, the row key)."""

    def __init__(self, engine: Engine, portal: str, seal: TokenSeal | None = None) -> None:
        self.engine = engine
        self.portal = portal
        self.seal = seal or TokenSeal.for_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"

    def load(self) -> TokenSet | None:
        """The stored tokens, or ``None`` when ``auth set`` was never run."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(sync_token).where(sync_token.c.portal == self.portal)
                ).first()
        except SQLAlchemyError as exc:
            raise store_error(exc, what="reading the tokens") from exc
        if row is None:
            return None
        if any(_is_plain(row._mapping[name]) for name in SECRET_COLUMNS):
            self._seal_in_place()
        return _from_row(row._mapping, self.seal)

    def _seal_in_place(self) -> None:
        """A row stored before sealing existed: seal it now (same generation)."""
        try:
            with self.engine.connect() as conn:
                self._lock(conn)
                current = self._locked_row(conn)
                if current is not None:
                    conn.execute(
                        update(sync_token)
                        .where(sync_token.c.portal == self.portal)
                        .values(**self._values(current))
                    )
                conn.commit()
        except SQLAlchemyError as exc:
            raise store_error(exc, what="sealing the stored tokens") from exc
        log.info("oauth.tokens_sealed", extra={"oauth.key": self.seal.where})

    def save(self, tokens: TokenSet) -> TokenSet:
        """Store a new pair given by the operator (``auth set``); bumps the generation."""
        try:
            with self.engine.connect() as conn:
                self._lock(conn)
                current = self._locked_row(conn)
                generation = 0 if current is None else current.generation + 1
                stored = _normalized(
                    TokenSet(**{**_fields(tokens), "portal": self.portal, "generation": generation})
                )
                if current is None:
                    conn.execute(insert(sync_token).values(**self._values(stored)))
                else:
                    conn.execute(
                        update(sync_token)
                        .where(sync_token.c.portal == self.portal)
                        .values(**self._values(stored))
                    )
                conn.commit()
        except SQLAlchemyError as exc:
            raise store_error(exc, what="storing the tokens") from exc
        return stored

    def rotate(self, seen_generation: int, exchange: Exchange) -> TokenSet:
        """Refresh once across all processes; return the pair everyone should now use.

        ``exchange`` runs while the row is locked, and only when the stored generation is
        still ``seen_generation``. If it raises, nothing is written and the lock is freed.
        """
        try:
            with self.engine.connect() as conn:
                self._lock(conn)
                current = self._locked_row(conn)
                if current is None:
                    conn.rollback()
                    raise AuthRevokedError(f"no tokens stored for {self.portal}; {AUTH_SET_HINT}")
                if current.generation != seen_generation:
                    conn.rollback()
                    log.info("oauth.refresh_joined", extra={"oauth.generation": current.generation})
                    return current
                try:
                    fresh = _normalized(current.rotated(exchange(current)))
                except BaseException:
                    conn.rollback()
                    raise
                conn.execute(
                    update(sync_token)
                    .where(sync_token.c.portal == self.portal)
                    .where(sync_token.c.generation == seen_generation)
                    .values(**self._values(fresh))
                )
                conn.commit()
        except SQLAlchemyError as exc:
            failed = store_error(exc, what="storing the rotated tokens")
            raise StoreError(
                f"{failed.message}; if the refresh went through, the new pair is lost: "
                f"{AUTH_SET_HINT}",
                transient=False,
            ) from exc
        log.info("oauth.refreshed", extra={"oauth.generation": fresh.generation})
        return fresh

    def _lock(self, conn: Connection) -> None:
        lock_for_write(conn)  # SQLite: BEGIN IMMEDIATE; others lock the row FOR UPDATE

    def _locked_row(self, conn: Connection) -> TokenSet | None:
        query = select(sync_token).where(sync_token.c.portal == self.portal)
        if not self._sqlite:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else _from_row(row._mapping, self.seal)

    def _values(self, tokens: TokenSet) -> dict[str, Any]:
        values = _fields(tokens)
        for name in SECRET_COLUMNS:
            values[name] = self.seal.seal(values[name])
        return values


def _fields(tokens: TokenSet) -> dict[str, Any]:
    return {name: getattr(tokens, name) for name in TokenSet.__dataclass_fields__}


def _normalized(tokens: TokenSet) -> TokenSet:
    """Times as every backend stores them: aware UTC, whole seconds; issued now if unset."""
    issued = _utc(tokens.issued_at) or datetime.now(UTC)
    expires = _utc(tokens.expires_at)
    return replace(
        tokens,
        issued_at=issued.replace(microsecond=0),
        expires_at=expires.replace(microsecond=0) if expires else None,
    )


SECRET_COLUMNS = ("refresh_token", "access_token", "application_token")


def _is_plain(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith(PREFIX)


def _from_row(row: Any, seal: TokenSeal) -> TokenSet:
    return TokenSet(
        portal=row["portal"],
        refresh_token=seal.open(row["refresh_token"]) or "",
        access_token=seal.open(row["access_token"]),
        issued_at=_aware(row["issued_at"]),
        expires_at=_aware(row["expires_at"]),
        member_id=row["member_id"],
        client_endpoint=row["client_endpoint"],
        server_endpoint=row["server_endpoint"],
        scope=row["scope"],
        application_token=seal.open(row["application_token"]),
        generation=int(row["generation"] or 0),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """Databases without time zones (SQLite, MariaDB) give naive UTC back."""
    return _utc(value)
