"""The connector's OAuth token pair as a value, and reading the OAuth server's answer.

A refresh returns a whole new pair: the old refresh token and the access token issued
with it stop working at once (digest §1.7), so the pair is always replaced together.
``generation`` counts rotations; a worker that waited for another's refresh sees a
higher generation and uses that pair instead of spending its own (spent) refresh token.

The answer's ``domain`` is the OAuth server, never the portal (digest A29); the portal's
REST base is ``client_endpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.core.portal_answers import as_number

__all__ = ["TokenSet", "parse_token_answer"]


@dataclass(frozen=True)
class TokenSet:
    """One portal's tokens. ``repr`` never shows a token."""

    portal: str
    refresh_token: str
    access_token: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    member_id: str | None = None
    client_endpoint: str | None = None
    server_endpoint: str | None = None
    scope: str | None = None
    application_token: str | None = None
    generation: int = 0

    def __repr__(self) -> str:
        return (
            f"TokenSet(portal={self.portal!r}, generation={self.generation}, "
            f"access_token={'set' if self.access_token else 'none'}, "
            f"expires_at={self.expires_at.isoformat() if self.expires_at else None})"
        )

    __str__ = __repr__

    def expired(self, now: datetime, margin: timedelta = timedelta(seconds=0)) -> bool:
        """True when there is no access token or it expires before ``now + margin``."""
        if not self.access_token:
            return True
        return self.expires_at is not None and self.expires_at <= now + margin

    def secrets(self) -> tuple[str, ...]:
        """The secret strings this set holds (to mask them wherever text is printed)."""
        return tuple(
            t for t in (self.access_token, self.refresh_token, self.application_token) if t
        )

    def rotated(self, answer: TokenSet) -> TokenSet:
        """The new set after a refresh: ``answer``'s tokens, the next generation."""
        return replace(
            answer,
            portal=self.portal,
            generation=self.generation + 1,
            application_token=answer.application_token or self.application_token,
            member_id=answer.member_id or self.member_id,
            client_endpoint=answer.client_endpoint or self.client_endpoint,
            server_endpoint=answer.server_endpoint or self.server_endpoint,
            scope=answer.scope or self.scope,
        )


def parse_token_answer(portal: str, body: Mapping[str, Any], now: datetime) -> TokenSet:
    """Build a :class:`TokenSet` from a successful ``/oauth/token/`` answer.

    ``expires`` (unix time) wins over ``expires_in`` (seconds from now) when both exist.
    Raises ``ValueError`` when a token is missing.
    """
    access = body.get("access_token")
    refresh = body.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise ValueError("the token answer lacks access_token or refresh_token")
    expires_at: datetime | None = None
    expires = as_number(body.get("expires"))
    expires_in = as_number(body.get("expires_in"))
    if expires is not None:
        expires_at = datetime.fromtimestamp(expires, tz=UTC)
    elif expires_in is not None:
        expires_at = now + timedelta(seconds=expires_in)
    return TokenSet(
        portal=portal,
        refresh_token=refresh,
        access_token=access,
        issued_at=now,
        expires_at=expires_at,
        member_id=_text(body.get("member_id")),
        client_endpoint=_text(body.get("client_endpoint")),
        server_endpoint=_text(body.get("server_endpoint")),
        scope=_text(body.get("scope")),
        application_token=_text(body.get("application_token")),
    )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, (str, int)) and value != "" else None
