"""The REST methods event.offline.get/clear/error/list and feature.get.

They check the caller (app authorisation, administrator, plan — see ``event_access``),
read their parameters case-insensitively, validate them with the rest module's errors,
and delegate to ``portal.queue`` (:class:`connector.emulator.offline_queue.OfflineQueue`)
on the partition (``ctx.client_id``, ``ctx.auth_connector``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.event_access import (
    argument_error,
    argument_null,
    effective_connector,
    license_error,
    lower_keys,
    require_admin,
    require_app,
    require_offline_plan,
)
from connector.emulator.filter_ops import Condition, as_list, parse_filter, parse_order
from connector.emulator.offline_queue import (
    DEFAULT_LIMIT,
    GET_FIELDS,
    LIST_FIELDS,
    PAGE_SIZE,
    QUEUE_FILTER_OPS,
    php_int,
)
from connector.emulator.registry import MethodResult, registry

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView


def _partition_of(portal: PortalView, ctx: CallContext) -> tuple[str, str]:
    app_id = require_app(ctx)
    require_admin(ctx)
    require_offline_plan(portal)
    return app_id, effective_connector(portal, ctx)


def _process_id(query: dict[str, object]) -> str | None:
    value = query.get("process_id")
    return None if value is None else str(value).strip()


def _queue_filter(raw: object, fields: tuple[str, ...]) -> list[Condition]:
    conds = parse_filter(raw, allowed_fields=fields, allowed_ops=QUEUE_FILTER_OPS)
    for cond in conds:
        if isinstance(cond.value, list | dict):
            raise argument_error(f"The value of an argument '{cond.field}' has an invalid type")
    return conds


@registry.method("event.offline.get", webhook_ok=False)
def event_offline_get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``event.offline.get``: filter, order, limit, clear, process_id, error."""
    app_id, connector = _partition_of(portal, ctx)
    query = lower_keys(params)
    clear = php_int(query.get("clear"), 1) if "clear" in query else 1
    process_id = _process_id(query)
    if not clear and not portal.plan.extended_queue:
        raise license_error("extended offline events handling")
    limit = php_int(query["limit"]) if query.get("limit") is not None else DEFAULT_LIMIT
    error = php_int(query.get("error")) == 1
    if limit <= 0:
        raise argument_error("Value must be positive integer")
    conds = _queue_filter(query.get("filter"), GET_FIELDS)
    order = parse_order(query.get("order"), allowed_fields=GET_FIELDS) or None
    got = portal.queue.fetch(
        app_id,
        connector,
        conditions=conds,
        order=order,
        limit=limit,
        clear=bool(clear),
        process_id=process_id,
        error=error,
    )
    return MethodResult(
        {"process_id": got.process_id, "events": [portal.queue.render(r) for r in got.events]}
    )


@registry.method("event.offline.clear", webhook_ok=False)
def event_offline_clear(
    portal: PortalView, ctx: CallContext, params: dict[str, Any]
) -> MethodResult:
    """``event.offline.clear``: process_id (required), message_id[] over id[], else all."""
    app_id, connector = _partition_of(portal, ctx)
    query = lower_keys(params)
    process_id = _process_id(query)
    if process_id is None:
        raise argument_null("PROCESS_ID")
    if "message_id" in query and query["message_id"] is not None:
        raw = query["message_id"]
        if not isinstance(raw, list | tuple | dict):
            raise argument_error("Value must be array of MESSAGE_ID values")
        mids = [str(m).strip() for m in as_list(raw)]
        if any(len(m) != 32 for m in mids):
            raise argument_error("Value must be array of MESSAGE_ID values")
        portal.queue.clear(app_id, connector, process_id, message_ids=mids)
        return MethodResult(True)
    ids: list[int] | None = None
    if query.get("id") is not None:
        raw = query["id"]
        if not isinstance(raw, list | tuple | dict):
            raise argument_error("Value must be array of integers")
        ids = [php_int(i) for i in as_list(raw)]
        if any(i <= 0 for i in ids):
            raise argument_error("Value must be array of integers")
    portal.queue.clear(app_id, connector, process_id, ids=ids)
    return MethodResult(True)


@registry.method("event.offline.error", webhook_ok=False)
def event_offline_error(
    portal: PortalView, ctx: CallContext, params: dict[str, Any]
) -> MethodResult:
    """``event.offline.error``: process_id (required) and message_id[] (an array)."""
    app_id, connector = _partition_of(portal, ctx)
    query = lower_keys(params)
    process_id = _process_id(query)
    if process_id is None:
        raise argument_null("PROCESS_ID")
    raw = query.get("message_id")
    if not isinstance(raw, list | tuple | dict):
        raise argument_error("Value must be array of MESSAGE_ID values")
    portal.queue.mark_error(app_id, connector, process_id, [str(m) for m in as_list(raw)])
    return MethodResult(True)


@registry.method("event.offline.list", webhook_ok=False)
def event_offline_list(
    portal: PortalView, ctx: CallContext, params: dict[str, Any]
) -> MethodResult:
    """``event.offline.list``: a bare array, order ID ASC by default, 50 per page."""
    app_id, connector = _partition_of(portal, ctx)
    query = lower_keys(params)
    conds = _queue_filter(query.get("filter"), LIST_FIELDS)
    order = parse_order(query.get("order"), allowed_fields=LIST_FIELDS) or None
    start = max(0, php_int(query.get("start")))
    rows, total = portal.queue.list_page(
        app_id, connector, conditions=conds, order=order, start=start
    )
    nxt = start + PAGE_SIZE if start + PAGE_SIZE < total else None
    return MethodResult([portal.queue.render(r, full=True) for r in rows], total=total, next=nxt)


FEATURES = {
    "rest_offline_extended": "extended_queue",
    "rest_auth_connector": "auth_connector",
    "rest_offline_events": "offline_events",
}
"""``feature.get`` codes and the plan switch each one reports."""


@registry.method("feature.get")
def feature_get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    """``feature.get?CODE=rest_offline_extended`` → ``{"value": "Y"|"N"}``."""
    query = lower_keys(params)
    code = str(query.get("code") or "").strip().lower()
    attr = FEATURES.get(code)
    enabled = bool(getattr(portal.plan, attr)) if attr else False
    return MethodResult({"value": "Y" if enabled else "N"})
