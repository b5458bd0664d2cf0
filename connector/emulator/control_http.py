"""The control surface over HTTP: ``/_emulator/...`` routes calling the Python API of
:mod:`connector.emulator.control` (JSON in, JSON out; see that module for the table).

Every operation takes an optional ``portal`` (member_id or domain) in its JSON body or
query string. Bad input answers 400 ``{"error": <exception type>, "error_description"}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connector.emulator.control import ENTITIES, ControlAPI
from connector.emulator.oauth import DEFAULT_SCOPES
from connector.emulator.params import as_bool, as_int, as_str, parse_query
from connector.emulator.rest_errors import RestError


async def _body(request: Request) -> dict[str, Any]:
    query = parse_query(request.url.query)
    raw = await request.body()
    if not raw.strip():
        return query
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return {**query, **data}


def _portal_key(body: dict[str, Any]) -> str | None:
    value = body.get("portal")
    return as_str(value) or None


def control_routes(emulator: Any) -> list[BaseRoute]:
    """The ``/_emulator/`` routes operating on ``emulator`` (an ``Emulator``)."""
    api: ControlAPI = emulator

    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    async def apps(request: Request, body: dict[str, Any]) -> Any:
        scopes = body.get("scopes") or list(DEFAULT_SCOPES)
        if isinstance(scopes, str):
            scopes = [s for s in scopes.split(",") if s]
        return api.install_app(
            body.get("client_id"),
            body.get("client_secret"),
            scopes=list(scopes),
            user_id=as_int(body.get("user_id"), 1) or 1,
            portal=_portal_key(body),
            redirect_uri=as_str(body.get("redirect_uri")),
            install_callback=as_str(body.get("install_callback")),
            base_url=base_url(request),
        )

    async def users(request: Request, body: dict[str, Any]) -> Any:
        user = api.add_user(
            as_int(body.get("id"), 0) or 0,
            as_str(body.get("name"), "User"),
            is_admin=as_bool(body.get("is_admin")),
            portal=_portal_key(body),
        )
        return {"id": user.id, "name": user.name, "is_admin": user.is_admin}

    async def deliver(request: Request, body: dict[str, Any]) -> Any:
        api.deliver_online_events(portal=_portal_key(body), base_url=base_url(request))
        return {"ok": True}

    async def tokens(request: Request, body: dict[str, Any]) -> Any:
        return api.issue_tokens(
            as_str(body.get("client_id")),
            user_id=as_int(body.get("user_id"), 1) or 1,
            portal=_portal_key(body),
            base_url=base_url(request),
        )

    async def tokens_expire(request: Request, body: dict[str, Any]) -> Any:
        return {
            "expired": api.expire_tokens(
                as_str(body.get("client_id")) or None, portal=_portal_key(body)
            )
        }

    async def tokens_ttl(request: Request, body: dict[str, Any]) -> Any:
        api.set_access_ttl(as_int(body.get("seconds"), 3600) or 0)
        return {"access_ttl": api.oauth.access_ttl}

    async def crm_shape(request: Request, body: dict[str, Any]) -> Any:
        api.set_empty_multi_in_lists(
            as_bool(body.get("empty_multi_in_lists"), True), portal=_portal_key(body)
        )
        return {"ok": True}

    async def token_shape(request: Request, body: dict[str, Any]) -> Any:
        api.set_token_shape(as_str(body.get("shape")))
        return {"shape": api.oauth.token_shape}

    async def payment(request: Request, body: dict[str, Any]) -> Any:
        api.set_payment_required(
            as_str(body.get("client_id")), as_bool(body.get("on"), True), portal=_portal_key(body)
        )
        return {"ok": True}

    async def queue_raw(request: Request, body: dict[str, Any]) -> Any:
        queued = api.queue_raw(
            as_str(body.get("client_id")),
            as_str(body.get("connector_id")),
            as_str(body.get("event_name")),
            body.get("event_data"),
            user_id=as_int(body.get("user_id"), 1) or 1,
            portal=_portal_key(body),
        )
        return {"id": queued}

    async def uninstall(request: Request, body: dict[str, Any]) -> Any:
        api.uninstall_app(as_str(body.get("client_id")), portal=_portal_key(body))
        return {"ok": True}

    async def webhooks(request: Request, body: dict[str, Any]) -> Any:
        scopes = body.get("scopes")
        hook = api.add_webhook(
            as_int(body.get("user_id"), 1) or 1,
            secret=as_str(body.get("secret")) or None,
            scopes=set(scopes) if isinstance(scopes, list) else None,
            portal=_portal_key(body),
        )
        return {
            "user_id": hook.user_id,
            "secret": hook.secret,
            "url": f"{base_url(request)}/rest/{hook.user_id}/{hook.secret}/",
        }

    async def seed(request: Request, body: dict[str, Any]) -> Any:
        counts = {
            e: as_int(body.get(f"{e}s" if e != "company" else "companies"), 0) or 0
            for e in ENTITIES
        }
        return api.seed_crm(
            companies=counts["company"],
            contacts=counts["contact"],
            leads=counts["lead"],
            deals=counts["deal"],
            seed=as_int(body.get("seed")),
            portal=_portal_key(body),
        )

    async def ui(request: Request, body: dict[str, Any]) -> Any:
        action = request.path_params["action"]
        entity = as_str(body.get("entity"))
        user_id = as_int(body.get("user_id"), 1) or 1
        fields = body.get("fields") or {}
        if action == "add":
            return {"id": api.ui_add(entity, fields, user_id=user_id, portal=_portal_key(body))}
        entity_id = as_int(body.get("id"), 0) or 0
        if action == "update":
            api.ui_update(entity, entity_id, fields, user_id=user_id, portal=_portal_key(body))
        elif action == "delete":
            api.ui_delete(entity, entity_id, user_id=user_id, portal=_portal_key(body))
        else:
            raise ValueError(f"unknown UI action {action!r}")
        return {"ok": True}

    async def plan(request: Request, body: dict[str, Any]) -> Any:
        changes = {k: v for k, v in body.items() if k not in ("plan", "portal")}
        api.set_plan(as_str(body.get("plan")), portal=_portal_key(body), **changes)
        return {"plan": api.portal(_portal_key(body)).plan.name}

    async def limits(request: Request, body: dict[str, Any]) -> Any:
        rate = body.get("rate")
        burst = body.get("burst")
        op_limit = body.get("operating_limit")
        op_window = body.get("operating_window")
        return api.set_limits(
            rate=float(rate) if rate is not None else None,
            burst=as_int(burst) if burst is not None else None,
            enabled=as_bool(body["enabled"]) if "enabled" in body else None,
            operating_limit=float(op_limit) if op_limit is not None else None,
            operating_window=float(op_window) if op_window is not None else None,
            costs=body.get("costs"),
            operating_scope=as_str(body.get("operating_scope")) or None,
            reset=as_bool(body.get("reset")),
            portal=_portal_key(body),
        )

    async def faults(request: Request, body: dict[str, Any]) -> Any:
        if as_bool(body.get("clear")):
            api.clear_faults(portal=_portal_key(body))
        return api.set_faults(
            overload=as_bool(body["overload"]) if "overload" in body else None,
            overload_status=as_int(body.get("overload_status")),
            fail_next=as_int(body.get("fail_next")),
            fail_methods=body.get("fail_methods"),
            block_methods=body.get("block_methods"),
            delay=float(body["delay"]) if "delay" in body else None,
            method_delays=body.get("method_delays"),
            portal=_portal_key(body),
        )

    async def log_get(request: Request, body: dict[str, Any]) -> Any:
        entries = api.requests(
            as_str(body.get("method")) or None,
            portal=_portal_key(body),
            since=as_int(body.get("since"), 0) or 0,
        )
        return [e.as_dict() for e in entries]

    async def log_delete(request: Request, body: dict[str, Any]) -> Any:
        api.clear_log()
        return {"ok": True}

    async def queue(request: Request, body: dict[str, Any]) -> Any:
        return api.queue_state(portal=_portal_key(body))

    async def advance(request: Request, body: dict[str, Any]) -> Any:
        return {"now": api.advance(float(body.get("seconds", 0)))}

    async def pull(request: Request, body: dict[str, Any]) -> Any:
        options = {k: v for k, v in body.items() if k not in ("portal", "client_id")}
        result = api.pull_command(
            request.path_params["command"],
            client_id=as_str(body.get("client_id")) or None,
            portal=_portal_key(body),
            **options,
        )
        return _jsonable(result)

    async def state(request: Request, body: dict[str, Any]) -> Any:
        return api.state()

    def wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _body(request)
                result = await handler(request, body)
            except (KeyError, ValueError, TypeError, RuntimeError, RestError) as exc:
                return JSONResponse(
                    {"error": type(exc).__name__, "error_description": str(exc)}, status_code=400
                )
            return JSONResponse(result)

        return endpoint

    prefix = "/_emulator"
    table: list[tuple[str, Any, list[str]]] = [
        ("/apps", apps, ["POST"]),
        ("/apps/payment", payment, ["POST"]),
        ("/apps/uninstall", uninstall, ["POST"]),
        ("/queue/raw", queue_raw, ["POST"]),
        ("/users", users, ["POST"]),
        ("/events/deliver", deliver, ["POST"]),
        ("/tokens", tokens, ["POST"]),
        ("/tokens/expire", tokens_expire, ["POST"]),
        ("/tokens/ttl", tokens_ttl, ["POST"]),
        ("/tokens/shape", token_shape, ["POST"]),
        ("/crm/shape", crm_shape, ["POST"]),
        ("/webhooks", webhooks, ["POST"]),
        ("/seed", seed, ["POST"]),
        ("/ui/{action}", ui, ["POST"]),
        ("/plan", plan, ["POST"]),
        ("/limits", limits, ["POST"]),
        ("/faults", faults, ["POST"]),
        ("/log", log_get, ["GET"]),
        ("/queue", queue, ["GET"]),
        ("/clock/advance", advance, ["POST"]),
        ("/pull/{command}", pull, ["POST"]),
        ("/state", state, ["GET"]),
    ]
    routes: list[BaseRoute] = [
        Route(prefix + path, wrap(fn), methods=methods) for path, fn, methods in table
    ]
    routes.append(Route(prefix + "/log", wrap(log_delete), methods=["DELETE"]))
    return routes


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):
        return {k: _jsonable(v) for k, v in fields.items() if not k.startswith("_")}
    return str(value)
