"""Fixtures for the emulator's platform tests: a fresh emulator, an installed app with
its first token pair, an in-process HTTP client, and test-only REST methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from connector.emulator.app import Emulator
from connector.emulator.context import CallContext
from connector.emulator.portal import Portal
from connector.emulator.registry import Handler, MethodResult, registry

BASE = "https://emulator.bitrix24.test"


@pytest.fixture
def emulator() -> Emulator:
    """A fresh emulator with one Pro portal."""
    return Emulator()


@pytest.fixture
def app_creds(emulator: Emulator) -> dict[str, Any]:
    """An installed local app (scopes crm, pull, user) and its first token pair."""
    return emulator.install_app(scopes=("crm", "pull", "user"))


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the emulator in-process."""
    async with emulator.client(BASE) as client:
        yield client


@pytest.fixture
def method() -> Iterator[Callable[..., None]]:
    """Register a test-only REST method for one test: ``method(name, fn, scope=..)``."""
    added: list[str] = []

    def register(name: str, fn: Handler, *, scope: str = "", webhook_ok: bool = True) -> None:
        registry.method(name, scope=scope, webhook_ok=webhook_ok)(fn)
        added.append(name.lower())

    yield register
    for name in added:
        registry._handlers.pop(name, None)


def echo(portal: Portal, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """A test method answering with what it saw."""
    return MethodResult(
        {
            "params": params,
            "auth_connector": ctx.auth_connector,
            "client_id": ctx.client_id,
            "user_id": ctx.user_id,
            "via_webhook": ctx.via_webhook,
            "portal": portal.member_id,
        }
    )
