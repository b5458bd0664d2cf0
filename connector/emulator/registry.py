"""REST method name → handler, and what a handler returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView


@dataclass
class MethodResult:
    """A method's answer: ``result`` plus ``total``/``next`` for list methods."""

    result: Any
    total: int | None = None
    next: int | None = None


Handler = Callable[["PortalView", "CallContext", dict[str, Any]], MethodResult]
"""A REST method: the portal (``portal_view.PortalView``), the caller, the parameters."""


class MethodRegistry:
    """Maps lower-case method names to handlers.

    ``webhook_ok`` is False for methods an incoming webhook may not call (``event.*``).
    """

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Handler, bool, str]] = {}

    def method(
        self, name: str, *, scope: str = "", webhook_ok: bool = True
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self._handlers[name.lower()] = (fn, webhook_ok, scope)
            return fn

        return register

    def lookup(self, name: str) -> tuple[Handler, bool, str] | None:
        return self._handlers.get(name.lower())

    def names(self) -> list[str]:
        return sorted(self._handlers)


registry = MethodRegistry()
"""The one registry every method module registers into at import."""
