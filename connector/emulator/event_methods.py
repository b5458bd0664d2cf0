"""The REST methods event.bind, event.unbind, event.get and events.

Faithful to the rest module: parameter names upper-cased, the event name upper-cased,
app authorisation required (webhooks refused), offline (un)binding for administrators
only, the offline binding keyed by the request's ``auth_connector``. They delegate to
``portal.events`` (:class:`connector.emulator.events.EventHub`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.event_access import (
    access_error,
    argument_error,
    argument_null,
    effective_connector,
    require_app,
    require_offline_plan,
    upper_keys,
)
from connector.emulator.events import EVENT_CATALOG
from connector.emulator.offline_queue import php_int
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView


def _event_type(query: dict[str, object]) -> str:
    event_type = str(query.get("EVENT_TYPE") or "").strip().lower()
    if event_type == "":
        return "online"
    if event_type not in ("online", "offline"):
        raise argument_error("Value must be one of {online|offline}")
    return event_type


@registry.method("event.bind", webhook_ok=False)
def event_bind(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``event.bind``: event, event_type, handler, auth_type, options (+ auth_connector)."""
    app_id = require_app(ctx)
    query = upper_keys(params)
    name = str(query.get("EVENT") or "").strip().upper()
    user_id = php_int(query.get("AUTH_TYPE"))
    handler = str(query.get("HANDLER") or "").strip()
    raw_options = query.get("OPTIONS")
    options = raw_options if isinstance(raw_options, dict) else {}
    if user_id > 0:
        if not ctx.is_admin and user_id != ctx.user_id:
            raise access_error("Event binding with AUTH_TYPE requires administrator access rights")
    elif not ctx.is_admin:
        user_id = ctx.user_id
    connector = effective_connector(portal, ctx)
    if name == "":
        raise argument_null("EVENT")
    if _event_type(query) == "offline":
        if not ctx.is_admin:
            raise access_error("Offline events binding requires administrator access rights")
        require_offline_plan(portal)
        handler, user_id = "", 0
    elif handler == "":
        raise argument_null("HANDLER")
    info = EVENT_CATALOG.get(name)
    if info is None or (info.scope and ctx.scopes and info.scope not in ctx.scopes):
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    if handler == "" and info.disable_offline:
        raise argument_error("Offline event cannot be registered for this event.")
    stored = {code: php_int(options[code]) for code in info.int_options if code in options}
    portal.events.bind(
        app_id, name, handler=handler, connector_id=connector, user_id=user_id, options=stored
    )
    return MethodResult(True)


@registry.method("event.unbind", webhook_ok=False)
def event_unbind(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``event.unbind``: same parameters as bind; offline matches the request's connector."""
    app_id = require_app(ctx)
    query = upper_keys(params)
    name = str(query.get("EVENT") or "").strip().upper()
    handler = str(query.get("HANDLER") or "").strip()
    if name == "":
        raise argument_null("EVENT")
    connector: str | None = None
    user_id: int | None = None
    if _event_type(query) == "offline":
        if not ctx.is_admin:
            raise access_error("Offline events unbinding requires administrator access rights")
        handler = ""
        connector = effective_connector(portal, ctx)
    else:
        if handler == "":
            raise argument_null("HANDLER")
        if query.get("AUTH_TYPE") is not None:
            user_id = php_int(query.get("AUTH_TYPE"))
            if not ctx.is_admin and user_id != ctx.user_id:
                raise access_error(
                    "Event unbinding with AUTH_TYPE requires administrator access rights"
                )
        elif not ctx.is_admin:
            user_id = ctx.user_id
    count = portal.events.unbind(
        app_id, name, handler=handler, connector_id=connector, user_id=user_id
    )
    return MethodResult({"count": count})


@registry.method("event.get", webhook_ok=False)
def event_get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``event.get``: the app's bindings by ID (a non-admin sees only their own)."""
    app_id = require_app(ctx)
    rows = [
        b.describe()
        for b in portal.events.bindings_of(app_id)
        if ctx.is_admin or b.user_id == ctx.user_id
    ]
    return MethodResult(rows)


@registry.method("events", webhook_ok=False)
def events_list(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``events``: the event names the caller may bind (``SCOPE=…``, ``FULL=1``)."""
    require_app(ctx)
    query = upper_keys(params)
    scope = query.get("SCOPE")
    if scope not in (None, ""):
        scopes: set[str] | None = {str(scope)}
    elif php_int(query.get("FULL")):
        scopes = None
    else:
        scopes = set(ctx.scopes) | {""} if ctx.scopes else None
    names = [info.name for info in EVENT_CATALOG.values() if scopes is None or info.scope in scopes]
    return MethodResult(names)
