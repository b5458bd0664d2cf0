"""Discovery and "who am I" methods: ``methods``, ``method.get``, ``scope``, ``app.info``,
``server.time``, ``profile``, ``user.current``.

Shapes follow the ``rest`` module's ``CRestProvider`` (``methodsList``, ``scopeList``,
``appInfo``, ``getProfile``, ``getServerTime``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from connector.emulator.dispatch import GLOBAL_SCOPES
from connector.emulator.params import as_bool, as_str, lower_keys
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView

ALL_SCOPES = (
    "crm",
    "pull",
    "pull_channel",
    "user",
    "user_brief",
    "user_basic",
    "placement",
    "entity",
    "im",
    "task",
)


def _method_scopes() -> dict[str, str]:
    scopes: dict[str, str] = {}
    for name in registry.names():
        entry = registry.lookup(name)
        if entry is not None:
            scopes[name] = entry[2] if entry[2] not in GLOBAL_SCOPES else ""
    return scopes


@registry.method("methods")
def methods(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """Method names of the caller's scopes plus the global ones (``scope=``, ``full=``)."""
    query = lower_keys(params)
    by_method = _method_scopes()
    if "scope" in query:
        wanted = as_str(query["scope"])
        allowed = {wanted} if wanted else {""}
    elif as_bool(query.get("full")):
        allowed = set(by_method.values())
    else:
        allowed = set(ctx.scopes) | {""}
    return MethodResult([name for name, scope in by_method.items() if scope in allowed])


@registry.method("method.get")
def method_get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``{isExisting, isAvailable}`` for ``name``."""
    name = as_str(lower_keys(params).get("name")).lower()
    entry = registry.lookup(name) if name else None
    if entry is None:
        return MethodResult({"isExisting": False, "isAvailable": False})
    scope = entry[2]
    return MethodResult(
        {"isExisting": True, "isAvailable": scope in GLOBAL_SCOPES or scope in ctx.scopes}
    )


@registry.method("scope")
def scope(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """The caller's scopes; ``full=true`` lists every scope the portal knows."""
    if as_bool(lower_keys(params).get("full")):
        known = {s for s in _method_scopes().values() if s} | set(ALL_SCOPES)
        return MethodResult(sorted(known))
    return MethodResult(sorted(ctx.scopes))


@registry.method("app.info")
def app_info(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """The calling app's status on the portal (or a webhook's scopes)."""
    license_name = f"en_{portal.plan.name}"
    if ctx.via_webhook:
        return MethodResult({"SCOPE": sorted(ctx.scopes), "LICENSE": license_name})
    if ctx.client_id is None:
        raise RestError("ACCESS_DENIED", "Access denied! Application context required", 403)
    app_id = int(hashlib.md5(ctx.client_id.encode()).hexdigest()[:6], 16) % 10000 + 1
    return MethodResult(
        {
            "ID": app_id,
            "CODE": ctx.client_id,
            "VERSION": 1,
            "STATUS": "L" if ctx.client_id.startswith("local.") else "F",
            "INSTALLED": True,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": license_name,
            "LICENSE_TYPE": portal.plan.name,
            "LICENSE_FAMILY": portal.plan.name,
        }
    )


@registry.method("server.time")
def server_time(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """The portal's current time, ISO-8601 with its offset (PHP ``date('c')``)."""
    return MethodResult(portal.clock.iso())


def _user(portal: PortalView, ctx: CallContext) -> Any:
    user = portal.users.get(ctx.user_id)
    if user is None:
        raise RestError("ACCESS_DENIED", "Access denied! User authorization required", 403)
    return user


@registry.method("profile")
def profile(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """The current user: ``ID`` (a string), ``ADMIN``, ``NAME``, ``LAST_NAME``, time zone."""
    user = _user(portal, ctx)
    offset = portal.clock.tz.utcoffset(None)
    return MethodResult(
        {
            "ID": str(user.id),
            "ADMIN": user.is_admin,
            "NAME": user.name,
            "LAST_NAME": "",
            "PERSONAL_GENDER": "",
            "TIME_ZONE": "",
            "TIME_ZONE_OFFSET": int(offset.total_seconds()) if offset is not None else 0,
        }
    )


@registry.method("user.current", scope="user")
def user_current(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """The current user's card (a subset of the real fields)."""
    user = _user(portal, ctx)
    return MethodResult(
        {
            "ID": str(user.id),
            "XML_ID": "",
            "ACTIVE": True,
            "NAME": user.name,
            "LAST_NAME": "",
            "EMAIL": f"user{user.id}@{portal.domain}",
            "IS_ONLINE": "N",
            "USER_TYPE": "employee",
            "ADMIN": user.is_admin,
        }
    )


@registry.method("user.admin")
def user_admin(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """Whether the current user is a portal administrator."""
    return MethodResult(_user(portal, ctx).is_admin)
