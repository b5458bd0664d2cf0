"""Who may call ``event.*`` and which connector partition a request addresses.

Shared by ``events`` (bind/unbind/get) and ``offline_queue`` (``event.offline.*``):

* every ``event.*`` method needs application (OAuth) authorisation: a webhook or a
  caller without an app gets 403 ``WRONG_AUTH_TYPE`` (digest §1.1, L2249);
* ``event.offline.*`` and offline (un)binding need an administrator: 403
  ``ACCESS_DENIED`` "Access denied!" otherwise;
* the plan gates offline events and the ``auth_connector`` key (digest A1): on a plan
  without ``auth_connector`` the key is ignored (treated as ``""``) unless the hub's
  ``auth_connector_policy`` is ``"error"``, which answers 403 ``WRONG_LICENSE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_contract import PortalContract


def license_error(feature: str) -> RestError:
    """403 ``WRONG_LICENSE`` as the portal words it."""
    return RestError(
        "WRONG_LICENSE", f"This feature is not enabled for the current license: {feature}", 403
    )


def access_error(detail: str = "") -> RestError:
    """403 ``ACCESS_DENIED`` "Access denied!" (+ an explanation for binding)."""
    text = "Access denied!" + (f" {detail}" if detail else "")
    return RestError("ACCESS_DENIED", text, 403)


def argument_error(description: str) -> RestError:
    """400 ``ERROR_ARGUMENT`` (``ArgumentException`` in the rest module)."""
    return RestError("ERROR_ARGUMENT", description, 400)


def argument_null(name: str) -> RestError:
    """400 ``ERROR_ARGUMENT`` for a missing required parameter."""
    return RestError("ERROR_ARGUMENT", f"Argument '{name}' is null or empty", 400)


def require_app(ctx: CallContext) -> str:
    """The calling app's client_id; webhooks and app-less callers are refused."""
    if ctx.via_webhook or not ctx.client_id:
        raise RestError(
            "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403
        )
    return ctx.client_id


def require_admin(ctx: CallContext, detail: str = "") -> None:
    if not ctx.is_admin:
        raise access_error(detail)


def require_offline_plan(portal: PortalContract) -> None:
    if not portal.plan.offline_events:
        raise license_error("offline events")


def effective_connector(portal: PortalContract, ctx: CallContext, *, strict: bool = True) -> str:
    """The ``auth_connector`` of the request as the portal honours it (plan gating).

    ``strict=False`` (used when firing) never raises, it only drops an unlicensed key.
    """
    connector = (ctx.auth_connector or "").strip()
    if connector and not portal.plan.auth_connector:
        if strict and portal.events.auth_connector_policy == "error":
            raise license_error("auth_connector")
        return ""
    return connector


def lower_keys(params: dict[str, object]) -> dict[str, object]:
    """``event.offline.*`` read their parameter names case-insensitively."""
    return {str(k).lower(): v for k, v in params.items()}


def upper_keys(params: dict[str, object]) -> dict[str, object]:
    """``event.bind``/``unbind`` upper-case their parameter names."""
    return {str(k).upper(): v for k, v in params.items()}
