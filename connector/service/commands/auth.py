"""``b24-connector auth set|status``: store the app's tokens, and show them without showing them.

``auth set`` is how an operator starts (or restarts, after ``invalid_grant``) the token
chain: it writes the pair into ``sync_token`` for the portal in ``B24_PORTAL_URL`` and
bumps its generation, so every running worker picks up the new pair at its next refresh.
``auth status`` prints the portal, scopes, age and expiry — never a token.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from connector.core.oauth_tokens import TokenSet
from connector.errors import ConfigError
from connector.service.output import emit_json

__all__ = ["auth"]


@click.group("auth")
def auth() -> None:
    """Store and inspect the portal's OAuth tokens."""


def _refresh_token(given: str | None, path: Path | None, cfg: Any) -> str:
    """The refresh token from stdin (``-`` or a pipe), a file, B24_REFRESH_TOKEN, or argv —
    the last with a warning: argv is visible to other users and kept in shell history."""
    piped = None
    if given == "-" or (given is None and path is None and not sys.stdin.isatty()):
        piped = sys.stdin.read()  # what is piped in wins over B24_REFRESH_TOKEN
    if given == "-" or (piped and piped.strip()):
        token = piped or ""
    elif given is None and path is None and cfg.refresh_token is None:
        raise ConfigError(
            "auth set: give the refresh token on stdin, with --refresh-token-file F, "
            "or in B24_REFRESH_TOKEN"
        )
    elif given is not None:
        click.echo(
            "warning: a token in argv is visible in the process list and your shell "
            "history; prefer stdin, --refresh-token-file or B24_REFRESH_TOKEN",
            err=True,
        )
        token = given
    elif path is not None:
        token = path.read_text()
    else:
        token = cfg.refresh_token.get_secret_value()
    token = token.strip()
    if not token:
        raise ConfigError(
            "auth set: the refresh token is empty (--refresh-token, stdin, "
            "--refresh-token-file or B24_REFRESH_TOKEN)"
        )
    return token


@auth.command("set")
@click.option(
    "--refresh-token",
    default=None,
    help="The refresh token of the installed app ('-': read it from stdin). Prefer stdin, "
    "--refresh-token-file or B24_REFRESH_TOKEN: argv lands in shell history.",
)
@click.option(
    "--refresh-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the refresh token from this file.",
)
@click.option("--access-token", default=None, help="An access token issued with it (optional).")
def auth_set(
    refresh_token: str | None, refresh_token_file: Path | None, access_token: str | None
) -> None:
    """Store the app's tokens for this portal (B24_PORTAL_URL, B24_DATABASE_URL).

    The refresh token comes from stdin (``… | b24-connector auth set``),
    ``--refresh-token-file``, ``B24_REFRESH_TOKEN`` or ``--refresh-token``. Without
    --access-token the first portal call refreshes the pair.
    """
    from connector.service import wiring

    cfg = wiring.settings()
    refresh_token = _refresh_token(refresh_token, refresh_token_file, cfg)
    host = wiring.portal_host(cfg)
    engine = wiring.ready_engine(cfg)
    try:
        store = wiring.token_store(cfg, engine, host)
        previous = store.load()
        fresh = TokenSet(
            portal=host,
            refresh_token=refresh_token,
            access_token=(access_token or "").strip() or None,
            issued_at=datetime.now(UTC),
        )
        if previous is not None:  # keep what the portal told us about itself
            fresh = replace(
                fresh,
                member_id=previous.member_id,
                client_endpoint=previous.client_endpoint,
                server_endpoint=previous.server_endpoint,
                scope=previous.scope,
                application_token=previous.application_token,
            )
        stored = store.save(fresh)
    finally:
        engine.dispose()
    note = "" if stored.access_token else "; the first portal call will refresh it"
    click.echo(f"tokens stored for {host} (generation {stored.generation}){note}")
    click.echo(f"sealed with {store.seal.where}", err=True)


@auth.command("key")
def auth_key() -> None:
    """Print a new key for B24_SECRET_KEY (give every host of one database the same key)."""
    from connector.adapters.store.token_seal import new_key

    click.echo(new_key())


@auth.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def auth_status(as_json: bool) -> None:
    """Show token age, expiry, portal and scopes (never the tokens)."""
    from connector.service import wiring

    cfg = wiring.settings()
    host = wiring.portal_host(cfg)
    engine = wiring.ready_engine(cfg)
    try:
        tokens = wiring.token_store(cfg, engine, host).load()
    finally:
        engine.dispose()
    if tokens is None:
        raise ConfigError(f"no tokens stored for {host}; run: b24-connector auth set < token.txt")
    report = describe(tokens, datetime.now(UTC))
    if as_json:
        emit_json(report)
        return
    for key in (
        "portal",
        "member_id",
        "scopes",
        "issued_at",
        "age",
        "access_token",
        "expires_at",
        "expires_in",
        "generation",
        "client_endpoint",
    ):
        value = report[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        click.echo(f"{key.replace('_', ' '):<16}{'-' if value is None else value}")


def describe(tokens: TokenSet, now: datetime) -> dict[str, Any]:
    """What ``auth status`` shows: facts about the tokens, no token text."""
    age_s = int((now - tokens.issued_at).total_seconds()) if tokens.issued_at else None
    expires_in = int((tokens.expires_at - now).total_seconds()) if tokens.expires_at else None
    if not tokens.access_token:
        state = "none (refreshed on first use)"
    elif expires_in is not None and expires_in <= 0:
        state = "expired (refreshed on next use)"
    else:
        state = "present"
    return {
        "portal": tokens.portal,
        "member_id": tokens.member_id,
        "scopes": [s for s in (tokens.scope or "").split(",") if s],
        "issued_at": tokens.issued_at.isoformat() if tokens.issued_at else None,
        "age_s": age_s,
        "age": _human(age_s),
        "access_token": state,
        "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
        "expires_in_s": expires_in,
        "expires_in": _human(expires_in),
        "generation": tokens.generation,
        "client_endpoint": tokens.client_endpoint,
    }


def _human(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    sign = "-" if seconds < 0 else ""
    left = abs(seconds)
    days, left = divmod(left, 86_400)
    hours, left = divmod(left, 3_600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    if minutes:
        return f"{sign}{minutes}m {secs}s"
    return f"{sign}{secs}s"
