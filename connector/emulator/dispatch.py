"""Running one REST method for a caller: the checks every method call passes through.

Used for a top-level request (``request_handling``) and for each ``batch`` sub-command alike:
method lookup (404 ``ERROR_METHOD_NOT_FOUND``), webhook refusal (403
``WRONG_AUTH_TYPE``, what ``Bitrix\\Rest\\AuthTypeException`` gives), scope (403
``insufficient_scope``), the operating-time budget (429), injected 500s, then the
handler, timed and billed. Returns the result with its ``time`` block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView

GLOBAL_SCOPES = frozenset({"", "app", "global"})


@dataclass
class Invocation:
    """What one method call produced: its result and its ``time`` block."""

    result: MethodResult
    time: dict[str, Any]


def caller_key(ctx: CallContext) -> str:
    """Whose operating-time budget a call uses: the app, or the webhook's user."""
    if ctx.via_webhook:
        return f"webhook:{ctx.user_id}"
    return ctx.client_id or f"user:{ctx.user_id}"


def method_not_found() -> RestError:
    return RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)


def check_access(ctx: CallContext, name: str) -> None:
    """Raise the error the portal gives before running ``name`` for this caller."""
    entry = registry.lookup(name)
    if entry is None:
        raise method_not_found()
    _, webhook_ok, scope = entry
    if ctx.via_webhook and not webhook_ok:
        raise RestError(
            "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403
        )
    if scope not in GLOBAL_SCOPES and scope not in ctx.scopes:
        raise RestError(
            "insufficient_scope",
            "The request requires higher privileges than provided by the access token",
            403,
        )


def time_block(
    portal: PortalView,
    start: float,
    finish: float,
    processing: float,
    operating: float,
    reset_at: int,
) -> dict[str, Any]:
    """The ``time`` object every REST answer carries."""
    clock = portal.clock
    return {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": round(finish - start, 6),
        "processing": round(processing, 6),
        "date_start": clock.iso(start),
        "date_finish": clock.iso(finish),
        "operating_reset_at": reset_at,
        "operating": round(operating, 6),
    }


def invoke(
    portal: PortalView,
    ctx: CallContext,
    name: str,
    params: dict[str, Any],
    *,
    start: float | None = None,
) -> Invocation:
    """Run method ``name`` for ``ctx``; a failure raises ``RestError``."""
    began = portal.clock.now() if start is None else start
    check_access(ctx, name)
    entry = registry.lookup(name)
    assert entry is not None
    handler = entry[0]
    caller = caller_key(ctx)
    limits = portal.limits
    limits.check_operating(caller, name)
    limits.check_failure(name)
    t0 = time.perf_counter()
    try:
        result = handler(portal, ctx, params)
    except RestError:
        limits.bill(caller, name, time.perf_counter() - t0)
        raise
    processing = time.perf_counter() - t0
    operating, reset_at = limits.bill(caller, name, processing)
    return Invocation(
        result, time_block(portal, began, portal.clock.now(), processing, operating, reset_at)
    )
