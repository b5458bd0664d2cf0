"""The ``oauth.bitrix.info`` stand-in: apps, installations, codes and token chains.

One :class:`OAuthServer` serves every portal of an emulator (it holds the application's
authorization, the portal holds the user's; digest §1.4). Rules (digest §1.4, §1.7, §12):

* an authorization ``code`` lives 30 s and works once;
* an ``access_token`` lives ``access_ttl`` seconds (3600 unless a test changes it);
* a ``refresh_token`` lives 28 days and works once: a refresh issues a new pair in the
  same chain and kills the previous pair (its access token then answers
  ``invalid_token``); independent chains (each from a real authorization) coexist;
* a reused or rotated-out refresh token → 400 ``invalid_grant``; a bad client → 401
  ``invalid_client``; ``PAYMENT_REQUIRED`` can be switched on per installation.

All times come from the emulator's :class:`~connector.emulator.clock.Clock`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.emulator.clock import Clock
from connector.emulator.rest_errors import RestError

CODE_TTL = 30.0
ACCESS_TTL = 3600
REFRESH_TTL = 28 * 86400
OAUTH_DOMAIN = "oauth.bitrix.info"
DEFAULT_SCOPES = ("crm", "pull", "user", "placement")


class OAuthError(Exception):
    """An error of the token endpoint: ``{"error", "error_description"}`` and a status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


@dataclass
class AppRecord:
    """A registered application (``local.*`` for a local app, ``app.*`` for marketplace)."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redirect_uri: str = ""
    api_only: bool = True
    status: str = "L"
    install_callback: str = ""

    @property
    def scope_string(self) -> str:
        return ",".join(self.scopes)


@dataclass
class Installation:
    """An app installed on one portal; ``application_token`` identifies it in events."""

    client_id: str
    member_id: str
    installed_by: int
    application_token: str
    payment_required: bool = False
    active: bool = True


@dataclass
class TokenPair:
    """One access/refresh pair of a chain. ``state``: ``live``, ``rotated`` or ``revoked``."""

    access_token: str
    refresh_token: str
    chain_id: int
    client_id: str
    member_id: str
    user_id: int
    scopes: tuple[str, ...]
    issued_at: float
    access_expires_at: float
    refresh_expires_at: float
    state: str = "live"
    refresh_used: bool = False

    @property
    def expires_in(self) -> int:
        return round(self.access_expires_at - self.issued_at)


@dataclass
class _Code:
    client_id: str
    member_id: str
    user_id: int
    expires_at: float
    used: bool = False


@dataclass
class OAuthServer:
    """Apps, installations, authorization codes and token chains for all portals."""

    clock: Clock = field(default_factory=Clock)
    domain: str = OAUTH_DOMAIN
    access_ttl: int = ACCESS_TTL
    refresh_ttl: int = REFRESH_TTL
    code_ttl: float = CODE_TTL
    token_shape: str = "current"
    """``current``: the fields today's server sends; ``seed``: only the course's sample
    (no ``expires``, no ``user_id``: a client must work from ``expires_in``)."""

    def __post_init__(self) -> None:
        self.apps: dict[str, AppRecord] = {}
        self.installations: dict[tuple[str, str], Installation] = {}
        self._codes: dict[str, _Code] = {}
        self._by_access: dict[str, TokenPair] = {}
        self._by_refresh: dict[str, TokenPair] = {}
        self._chains = 0
        self.refresh_count = 0

    # --- apps and installations ------------------------------------------------------

    def register_app(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        scopes: tuple[str, ...] | list[str] = DEFAULT_SCOPES,
        redirect_uri: str = "",
        api_only: bool = True,
        install_callback: str = "",
    ) -> AppRecord:
        """Register (or replace) an app. Without ``client_id`` a ``local.*`` one is made."""
        if client_id is None:
            client_id = f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}"
        if client_secret is None:
            client_secret = secrets.token_urlsafe(37)[:50]
        status = "L" if client_id.startswith("local.") else "F"
        app = AppRecord(
            client_id=client_id,
            client_secret=client_secret,
            scopes=tuple(scopes),
            redirect_uri=redirect_uri,
            api_only=api_only,
            status=status,
            install_callback=install_callback,
        )
        self.apps[client_id] = app
        return app

    def install(self, client_id: str, member_id: str, user_id: int = 1) -> Installation:
        """Install the app on a portal (idempotent: a re-install keeps the token)."""
        if client_id not in self.apps:
            raise KeyError(f"unknown app {client_id}")
        key = (client_id, member_id)
        existing = self.installations.get(key)
        if existing is not None and existing.active:
            return existing
        inst = Installation(
            client_id=client_id,
            member_id=member_id,
            installed_by=user_id,
            application_token=secrets.token_hex(16),
        )
        self.installations[key] = inst
        return inst

    def uninstall(self, client_id: str, member_id: str) -> None:
        """Remove the app from a portal: its access tokens there answer ``invalid_token``
        and a refresh answers ``PAYMENT_REQUIRED`` (digest §1.7, L1895–1900)."""
        inst = self.installations.get((client_id, member_id))
        if inst is not None:
            inst.active = False

    def installation(self, client_id: str, member_id: str) -> Installation | None:
        inst = self.installations.get((client_id, member_id))
        return inst if inst is not None and inst.active else None

    def set_payment_required(self, client_id: str, member_id: str, value: bool = True) -> None:
        inst = self.installations.get((client_id, member_id))
        if inst is None:
            raise KeyError(f"{client_id} is not installed on {member_id}")
        inst.payment_required = value

    # --- codes and tokens -------------------------------------------------------------

    def issue_code(self, client_id: str, member_id: str, user_id: int = 1) -> str:
        """An authorization code (what ``/oauth/authorize/`` hands to the redirect URI)."""
        code = secrets.token_hex(16)
        self._codes[code] = _Code(client_id, member_id, user_id, self.clock.now() + self.code_ttl)
        return code

    def issue_tokens(self, client_id: str, member_id: str, user_id: int = 1) -> TokenPair:
        """Start a new chain (as a real authorization would) and return its first pair."""
        app = self.apps[client_id]
        self._chains += 1
        return self._new_pair(self._chains, app, member_id, user_id)

    def _new_pair(self, chain_id: int, app: AppRecord, member_id: str, user_id: int) -> TokenPair:
        now = self.clock.now()
        pair = TokenPair(
            access_token=secrets.token_hex(16),
            refresh_token=secrets.token_hex(16),
            chain_id=chain_id,
            client_id=app.client_id,
            member_id=member_id,
            user_id=user_id,
            scopes=app.scopes,
            issued_at=now,
            access_expires_at=now + self.access_ttl,
            refresh_expires_at=now + self.refresh_ttl,
        )
        self._by_access[pair.access_token] = pair
        self._by_refresh[pair.refresh_token] = pair
        return pair

    def expire_access_tokens(
        self, client_id: str | None = None, member_id: str | None = None
    ) -> int:
        """Make live access tokens expire now (their refresh tokens stay valid)."""
        now = self.clock.now()
        count = 0
        for pair in self._by_access.values():
            if pair.state != "live" or pair.access_expires_at <= now:
                continue
            if client_id is not None and pair.client_id != client_id:
                continue
            if member_id is not None and pair.member_id != member_id:
                continue
            pair.access_expires_at = now
            count += 1
        return count

    def live_pairs(self, client_id: str | None = None) -> list[TokenPair]:
        return [
            p
            for p in self._by_access.values()
            if p.state == "live" and (client_id is None or p.client_id == client_id)
        ]

    # --- the token endpoint -----------------------------------------------------------

    def token_endpoint(
        self,
        params: dict[str, Any],
        server_endpoint: str,
        client_endpoint: Callable[[str], str] | None = None,
    ) -> dict[str, Any]:
        """Handle ``/oauth/token/`` (GET query or POST form): returns the §1.4 response.

        ``server_endpoint`` is this OAuth server's REST base; ``client_endpoint(member_id)``
        gives the portal's REST base (default: the same URL, as the emulator serves both).
        """
        grant_type = _text(params.get("grant_type"))
        client_id = _text(params.get("client_id"))
        client_secret = _text(params.get("client_secret"))
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError("unsupported_grant_type", "Unsupported grant type")
        app = self.apps.get(client_id)
        if app is None or not secrets.compare_digest(app.client_secret, client_secret):
            raise OAuthError("invalid_client", "Invalid client credentials", 401)
        if grant_type == "authorization_code":
            pair = self._grant_code(app, _text(params.get("code")))
        else:
            pair = self._grant_refresh(app, _text(params.get("refresh_token")))
        portal_base = client_endpoint(pair.member_id) if client_endpoint else server_endpoint
        return self.token_response(pair, portal_base, server_endpoint)

    def _check_installed(self, app: AppRecord, member_id: str) -> None:
        inst = self.installation(app.client_id, member_id)
        if inst is None or inst.payment_required:
            raise OAuthError("PAYMENT_REQUIRED", "Payment required", 402)

    def _grant_code(self, app: AppRecord, code: str) -> TokenPair:
        if not code:
            raise OAuthError("invalid_request", "code is required")
        record = self._codes.get(code)
        if record is None or record.used or record.client_id != app.client_id:
            raise OAuthError("invalid_grant", "Invalid authorization code")
        record.used = True
        if record.expires_at <= self.clock.now():
            raise OAuthError("invalid_grant", "Authorization code has expired")
        self._check_installed(app, record.member_id)
        return self.issue_tokens(app.client_id, record.member_id, record.user_id)

    def _grant_refresh(self, app: AppRecord, refresh_token: str) -> TokenPair:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required")
        old = self._by_refresh.get(refresh_token)
        if old is None or old.client_id != app.client_id:
            raise OAuthError("invalid_grant", "Invalid refresh token")
        if old.refresh_used or old.state != "live":
            raise OAuthError("invalid_grant", "Refresh token has already been used")
        if old.refresh_expires_at <= self.clock.now():
            raise OAuthError("invalid_grant", "Refresh token has expired")
        self._check_installed(app, old.member_id)
        old.refresh_used = True
        old.state = "rotated"
        self.refresh_count += 1
        return self._new_pair(old.chain_id, app, old.member_id, old.user_id)

    def token_response(
        self, pair: TokenPair, client_endpoint: str, server_endpoint: str | None = None
    ) -> dict[str, Any]:
        """The §1.4 fields (``domain`` is the OAuth host), plus ``expires``/``user_id``
        that the current server also sends (b24pysdk reads ``expires``)."""
        app = self.apps[pair.client_id]
        answer: dict[str, Any] = {
            "access_token": pair.access_token,
            "client_endpoint": client_endpoint,
            "domain": self.domain,
            "expires": int(pair.access_expires_at),
            "expires_in": pair.expires_in,
            "member_id": pair.member_id,
            "refresh_token": pair.refresh_token,
            "scope": app.scope_string,
            "server_endpoint": server_endpoint or client_endpoint,
            "status": app.status,
            "user_id": pair.user_id,
        }
        if self.token_shape == "seed":  # exactly the course's sample (L1752–1762)
            del answer["expires"], answer["user_id"]
        return answer

    # --- REST-side authentication ---------------------------------------------------------

    def authenticate(self, access_token: str) -> TokenPair:
        """The pair behind an access token, or the REST error a portal gives (§12)."""
        if not access_token:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        pair = self._by_access.get(access_token)
        if pair is None or pair.state != "live":
            raise RestError("invalid_token", "The access token provided is invalid.", 401)
        if self.installation(pair.client_id, pair.member_id) is None:
            raise RestError("invalid_token", "The access token provided is invalid.", 401)
        if pair.access_expires_at <= self.clock.now():
            raise RestError("expired_token", "The access token provided has expired.", 401)
        return pair


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))
