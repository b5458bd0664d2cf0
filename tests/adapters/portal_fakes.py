"""Small fakes for the portal client tests: a MockTransport portal and an in-memory token store.

``FakePortal`` answers ``/rest/<method>`` and ``/oauth/token/`` like Bitrix24 does, with
single-use refresh tokens, a list of scripted answers per method, a request log and a
tiny ``batch`` that resolves ``$result[...]`` references. It is deliberately much
smaller than the emulator; the emulator-backed tests cover the real protocol.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from connector.core.oauth_tokens import TokenSet
from connector.emulator.params import as_dict, as_list, parse_query

PORTAL = "fake.bitrix24.test"
REST = f"https://{PORTAL}/rest/"
OAUTH = "https://oauth.fake.test"


@dataclass
class Seen:
    """One request the fake received."""

    path: str
    method: str
    params: dict[str, Any]
    url: str
    body: bytes


@dataclass
class FakePortal:
    """A MockTransport handler with scripted answers and real token rules."""

    access: str = "access-0"
    refresh: str = "refresh-0"
    generation: int = 0
    expired: bool = False
    scripted: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    refreshes: int = 0
    oauth_status: int | None = None
    oauth_body: Any = None
    oauth_post_allowed: bool = True
    network_errors: int = 0
    retry_after: str | None = None
    spent: set[str] = field(default_factory=set)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def script(self, method: str, *answers: tuple[int, Any]) -> None:
        """Answer ``method`` with these (status, body) pairs first, in order."""
        self.scripted.setdefault(method, []).extend(answers)

    def requests_for(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        params = parse_query(
            request.url.query.decode()
            if isinstance(request.url.query, bytes)
            else str(request.url.query)
        )
        if body:
            params.update(parse_query(body))
        path = request.url.path
        method = path.removeprefix("/rest/") if path.startswith("/rest/") else path
        self.seen.append(Seen(path, method, params, str(request.url), body))
        if self.network_errors > 0:
            self.network_errors -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/oauth/token/":
            return self._token(request, params)
        if params.get("auth") != self.access or self.expired:
            code = "expired_token" if params.get("auth") == self.access else "invalid_token"
            return _json(401, {"error": code, "error_description": "token"})
        queue = self.scripted.get(method)
        if queue:
            status, answer = queue.pop(0)
            response = _json(status, answer)
            if self.retry_after is not None and status >= 500:
                response.headers["retry-after"] = self.retry_after
            return response
        if method == "batch":
            return _json(200, {"result": self._batch(params), "time": {}})
        if method.endswith(".list"):
            return _json(200, {"result": self._list(params), "time": {"operating": 0.1}})
        return _json(200, {"result": {"method": method}, "time": {}})

    def _token(self, request: httpx.Request, params: dict[str, Any]) -> httpx.Response:
        if request.method == "POST" and not self.oauth_post_allowed:
            return _json(405, {"error": "method_not_allowed"})
        if self.oauth_status is not None:
            return _json(self.oauth_status, self.oauth_body)
        token = params.get("refresh_token")
        if token != self.refresh or token in self.spent:
            return _json(400, {"error": "invalid_grant", "error_description": "spent"})
        self.spent.add(str(token))
        self.refreshes += 1
        self.generation += 1
        self.access = f"access-{self.generation}"
        self.refresh = f"refresh-{self.generation}"
        self.expired = False
        return _json(
            200,
            {
                "access_token": self.access,
                "refresh_token": self.refresh,
                "expires_in": 3600,
                "domain": "oauth.bitrix.info",
                "member_id": "m1",
                "client_endpoint": REST,
                "scope": "crm,pull",
            },
        )

    def _list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        flt = as_dict(params.get("filter"))
        after = int(flt.get(">ID", 0) or 0)
        return [r for r in self.rows if int(r["ID"]) > after][:50]

    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, text in as_dict(params.get("cmd")).items():
            method, _, query = str(text).partition("?")
            sub = _resolve(parse_query(query), results)
            if sub.get("auth_connector") is None:
                errors[key] = {"error": "NO_CONNECTOR", "error_description": "missing"}
            elif method.endswith(".list"):
                if isinstance(as_dict(sub.get("filter")).get(">ID"), (list, dict)):
                    # a reference past the end resolves to an array, as in PHP
                    errors[key] = {"error": "INVALID_FILTER", "error_description": "bad"}
                else:
                    results[key] = self._list(sub)
            else:
                results[key] = {"method": method}
        return {
            "result": results or [],
            "result_error": errors or [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }


def _resolve(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("$result["):
        node: Any = results
        for part in value[len("$result") :].strip("[]").split("]["):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return as_list(node)
        return node
    return value


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


class MemoryTokens:
    """A TokenSource in memory, with the same single-flight rule as the SQL store."""

    def __init__(self, tokens: TokenSet | None) -> None:
        self.tokens = tokens
        self.lock = threading.Lock()
        self.rotations = 0

    def load(self) -> TokenSet | None:
        return self.tokens

    def rotate(self, seen_generation: int, exchange: Callable[[TokenSet], TokenSet]) -> TokenSet:
        with self.lock:
            assert self.tokens is not None
            if self.tokens.generation != seen_generation:
                return self.tokens
            self.tokens = self.tokens.rotated(exchange(self.tokens))
            self.rotations += 1
            return self.tokens


def stored(access: str | None = "access-0", refresh: str = "refresh-0") -> TokenSet:
    return TokenSet(portal=PORTAL, access_token=access, refresh_token=refresh)
