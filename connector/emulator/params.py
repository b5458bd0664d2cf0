"""Request parameters the way PHP (and so Bitrix24) sees them.

Query strings and form bodies use PHP bracket syntax: ``fields[TITLE]=x``,
``id[]=1&id[]=2``, ``filter[>ID]=5``, ``fields[PHONE][0][VALUE]=...``. They parse into
nested dicts whose keys are always strings (``id[]`` appends ``"0"``, ``"1"``, ... like a
PHP list). JSON bodies keep their JSON types, so a handler may meet ``"5"`` or ``5``,
``{"0": "a"}`` or ``["a"]`` for the same parameter: read them through :func:`as_list`,
:func:`as_dict`, :func:`as_int`, :func:`as_str` and :func:`as_bool`.

:func:`merge` combines query and body as PHP's ``$_REQUEST`` does (body wins, top-level
keys). :func:`build_query` is the inverse of :func:`parse_query` (PHP ``http_build_query``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

Params = dict[str, Any]

_SEGMENT = re.compile(r"\[([^\]]*)\]")


class ParamsError(ValueError):
    """The body could not be read as parameters (bad JSON, not an object)."""


def split_key(name: str) -> list[str]:
    """``fields[PHONE][0][VALUE]`` → ``["fields", "PHONE", "0", "VALUE"]``.

    As in PHP: the base name loses leading spaces and has ``.``/`` `` turned into ``_``;
    ``[]`` gives an empty segment (append); text after the last ``]`` is dropped; a ``[``
    that is never closed is part of the base name (as ``_``).
    """
    name = name.lstrip(" ")
    first = name.find("[")
    if first <= 0 or "]" not in name[first:]:
        return [_php_base_name(name)]
    base = _php_base_name(name[:first])
    segments: list[str] = [base]
    pos = first
    while pos < len(name) and name[pos] == "[":
        match = _SEGMENT.match(name, pos)
        if match is None:
            break
        segments.append(match.group(1))
        pos = match.end()
    return segments


def _php_base_name(base: str) -> str:
    return base.replace(".", "_").replace(" ", "_").replace("[", "_")


def _next_index(container: dict[str, Any]) -> str:
    numeric = [int(k) for k in container if _is_php_int(k)]
    return str(max(numeric) + 1) if numeric else "0"


def _is_php_int(key: str) -> bool:
    """PHP turns a key like ``"7"`` or ``"-3"`` into an int (not ``"07"``, ``"+1"``)."""
    if key == "0":
        return True
    return bool(re.fullmatch(r"-?[1-9][0-9]*", key))


def assign(target: Params, segments: list[str], value: Any) -> None:
    """Set ``value`` at the bracket path ``segments`` inside ``target`` (last one wins)."""
    node: dict[str, Any] = target
    for index, segment in enumerate(segments):
        key = _next_index(node) if segment == "" else segment
        if index == len(segments) - 1:
            node[key] = value
            return
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> Params:
    """Build the nested parameter dict from decoded ``(name, value)`` pairs."""
    result: Params = {}
    for name, value in pairs:
        if name == "":
            continue
        assign(result, split_key(name), value)
    return result


def parse_query(query: str | bytes) -> Params:
    """Parse ``a=1&b[x]=2&c[]=3`` (URL-encoded, ``+`` is a space) into nested dicts."""
    text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return parse_pairs(pairs)


def parse_json(body: bytes | str) -> Params:
    """A JSON body must be an object; an empty body is no parameters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"request body is not valid JSON: {exc.msg}") from exc
    if isinstance(data, list):
        # PHP decodes a top-level JSON list as an array with keys 0..n-1.
        return {str(i): v for i, v in enumerate(data)}
    if not isinstance(data, dict):
        raise ParamsError("request body must be a JSON object")
    return data


def parse_body(body: bytes, content_type: str) -> Params:
    """Parse a POST body by its content type: JSON, form-encoded, or nothing."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("application/json", "text/json") or kind.endswith("+json"):
        return parse_json(body)
    if kind in ("application/x-www-form-urlencoded", ""):
        stripped = body.strip()
        if kind == "" and stripped[:1] in (b"{", b"["):
            return parse_json(body)
        return parse_query(body)
    return {}


def merge(query: Params, body: Params) -> Params:
    """``$_REQUEST``: query parameters, overridden key by key (top level) by the body."""
    merged = dict(query)
    merged.update(body)
    return merged


# --- reading values that may be PHP strings or JSON types -----------------------------


def as_list(value: Any) -> list[Any]:
    """A PHP array with numeric keys (or a JSON list, or one scalar) as a Python list.

    ``{"0": "a", "1": "b"}`` → ``["a", "b"]`` in key order (numeric keys sorted as
    numbers); other dicts give their values in insertion order; ``None``/``""`` → ``[]``.
    """
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        keys = list(value)
        if keys and all(isinstance(k, str) and _is_php_int(k) for k in keys):
            keys.sort(key=int)
        return [value[k] for k in keys]
    return [value]


def as_dict(value: Any) -> dict[str, Any]:
    """A PHP array as a dict (a JSON list becomes ``{"0": ..}``); scalars give ``{}``."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def as_int(value: Any, default: int | None = None) -> int | None:
    """PHP ``intval``-like: ``"12"``, ``12``, ``12.0``, ``True`` → 12; junk → ``default``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        if match:
            return int(match.group(1))
    return default


def as_str(value: Any, default: str = "") -> str:
    """A scalar as the string PHP would see (``True`` → ``"1"``, ``None`` → default)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return default
    return str(value)


_TRUE = {"1", "y", "yes", "true", "on"}


def as_bool(value: Any, default: bool = False) -> bool:
    """Bitrix-style flags: ``1``, ``"1"``, ``"Y"``, ``"true"``, ``true`` are true."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def php_truthy(value: Any) -> bool:
    """PHP's ``(bool)`` cast: ``""``, ``"0"``, ``0``, empty arrays and null are false;
    every other string (``"false"`` and ``"N"`` too) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (dict, list)):
        return len(value) > 0
    return bool(value)


def lower_keys(params: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys lower-cased (``array_change_key_case``); the last duplicate wins."""
    return {str(k).lower(): v for k, v in params.items()}


def get_ci(params: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """Look up ``name`` case-insensitively among the top-level keys."""
    if name in params:
        return params[name]
    wanted = name.lower()
    for key, value in params.items():
        if str(key).lower() == wanted:
            return value
    return default


# --- encoding ---------------------------------------------------------------------------


def build_query(params: Mapping[str, Any]) -> str:
    """PHP ``http_build_query``: nested dicts/lists as brackets, ``True`` as ``1``.

    ``None`` values are skipped (as PHP does with ``null``).
    """
    parts: list[str] = []
    for key, value in params.items():
        _encode(parts, quote(str(key), safe=""), value)
    return "&".join(parts)


def _encode(parts: list[str], prefix: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _encode(parts, f"{prefix}%5B{quote(str(key), safe='')}%5D", item)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _encode(parts, f"{prefix}%5B{index}%5D", item)
        return
    parts.append(f"{prefix}={quote(as_str(value), safe='')}")
