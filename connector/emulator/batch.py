"""The ``batch`` method (digest §4; the ``rest`` module's ``methodsBatch``).

* ``cmd`` is a map or a list of ``"method?urlencoded-params"``; at most 50 run, each one
  past that answers ``ERROR_BATCH_LENGTH_EXCEEDED`` in ``result_error``.
* Commands run in order; ``halt`` stops after the first failing one (``halt`` is read
  with PHP's ``(bool)`` cast, as ``methodsBatch`` does: ``"0"``/``""``/``0``/``false`` are
  false, any other string — even ``"false"`` — is true).
* ``$result[key][path…]`` (also ``$next``, ``$total``, ``$time``, ``$error``) in a value is
  replaced by an earlier command's output, as ``CRestUtil::processBatchElement`` does: a
  value that is exactly the reference takes the referenced value whatever its type; inside
  a longer string only a string or number is spliced in (the rest of that token, up to
  white space, is consumed by the reference).
* A nested ``batch`` answers 405 ``ERROR_BATCH_METHOD_NOT_ALLOWED``.
* Sub-commands run as the outer caller and inherit the outer ``auth_connector`` unless
  they carry their own (digest §12).
* The answer is ``{result, result_error, result_total, result_next, result_time}``; a
  section is a JSON list when its keys are 0..n-1 (empty → ``[]``), as PHP encodes it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connector.emulator.dispatch import invoke
from connector.emulator.params import as_dict, parse_query, php_truthy
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView

BATCH_MAX_LENGTH = 50
SECTIONS = ("result", "error", "total", "next", "time")
_REFERENCE = re.compile(r"\$(result|next|total|time|error)(\S*)", re.IGNORECASE)
_PATH = re.compile(r"\[([^\]]+)\]")


def php_array(section: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """How PHP's ``json_encode`` renders an array: keys 0..n-1 in order → a list."""
    keys = list(section)
    if all(key == str(index) for index, key in enumerate(keys)):
        return [section[key] for key in keys]
    return section


def _walk(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value and value[key] is not None:
            value = value[key]
        elif (
            isinstance(value, list)
            and key.isdigit()
            and int(key) < len(value)
            and value[int(key)] is not None
        ):
            value = value[int(key)]
        else:
            break
    return value


def substitute(value: str, outputs: dict[str, dict[str, Any]]) -> Any:
    """Resolve ``$result[...]`` references in one parameter value."""
    matches = list(_REFERENCE.finditer(value))
    if not matches:
        return value
    for match in matches:
        path = _PATH.findall(match.group(2))
        if not path:
            continue
        resolved = _walk(outputs[match.group(1).lower()], path)
        if match.group(0) == value:
            return resolved
        if isinstance(resolved, bool) or not isinstance(resolved, (str, int, float)):
            continue
        text = (
            str(int(resolved))
            if isinstance(resolved, float) and resolved.is_integer()
            else str(resolved)
        )
        value = value.replace(match.group(0), text)
    return value


def substitute_all(params: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """Apply :func:`substitute` to every leaf value of the parsed parameters."""
    if isinstance(params, dict):
        return {key: substitute_all(item, outputs) for key, item in params.items()}
    if isinstance(params, str):
        return substitute(params, outputs)
    return params


def split_command(command: str) -> tuple[str, str]:
    """``"crm.deal.get?ID=1"`` → ``("crm.deal.get", "ID=1")``."""
    parts = urlsplit(command)
    return parts.path.strip(), parts.query


def run_batch(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    lowered = {str(k).lower(): v for k, v in params.items()}
    halt = php_truthy(lowered.get("halt"))
    commands = as_dict(lowered.get("cmd"))
    outputs: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for count, (key, command) in enumerate(commands.items()):
        if count >= BATCH_MAX_LENGTH:
            error = RestError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
            outputs["error"][key] = {"error": error.code, "error_description": error.description}
            if halt:
                break
            continue
        if not isinstance(command, str):
            continue
        try:
            _run_one(portal, ctx, key, command, outputs)
        except RestError as exc:
            outputs["error"][key] = {"error": exc.code, "error_description": exc.description}
            if halt:
                break
    return MethodResult(
        {
            "result": php_array(outputs["result"]),
            "result_error": php_array(outputs["error"]),
            "result_total": php_array(outputs["total"]),
            "result_next": php_array(outputs["next"]),
            "result_time": php_array(outputs["time"]),
        }
    )


def _run_one(
    portal: PortalView, ctx: CallContext, key: str, command: str, outputs: dict[str, dict[str, Any]]
) -> None:
    method, query = split_command(command)
    sub_params = substitute_all(parse_query(query), outputs) if query else {}
    sub_params.pop("auth", None)
    sub_params.pop("access_token", None)
    connector = sub_params.pop("auth_connector", None)
    sub_ctx = ctx
    if isinstance(connector, str) and connector != ctx.auth_connector:
        # Same request: the copy shares ``firings``, ``queued`` and ``batch_calls`` with
        # the outer context, so the request still ends with one count per (app,
        # connector) and one push.
        sub_ctx = replace(ctx, auth_connector=connector)
    trace: dict[str, Any] = {
        "key": key,
        "method": method.lower(),
        "params": sub_params,
        "auth_connector": sub_ctx.auth_connector,
        "error": None,
    }
    ctx.batch_calls.append(trace)
    try:
        if method.lower() == "batch":
            raise RestError(
                "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
            )
        done = invoke(portal, sub_ctx, method, sub_params)
    except RestError as exc:
        trace["error"] = exc.code
        raise
    outputs["result"][key] = done.result.result
    if done.result.total is not None:
        outputs["total"][key] = done.result.total
    if done.result.next is not None:
        outputs["next"][key] = done.result.next
    outputs["time"][key] = done.time


@registry.method("batch")
def batch(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    return run_batch(portal, ctx, params)
