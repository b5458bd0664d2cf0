"""Encode nested parameters the way PHP's ``http_build_query`` does.

Bitrix24 reads parameters as PHP arrays, so nested values travel in bracket syntax:
``{"fields": {"TITLE": "x"}, "select": ["ID", "NAME"]}`` becomes
``fields[TITLE]=x&select[0]=ID&select[1]=NAME``. Lists become numbered keys (PHP turns
them back into a list), ``True``/``False`` become ``1``/``0`` and ``None`` is left out
(as PHP leaves out ``null``). An empty list or dict sends nothing, as in PHP.

:func:`flatten` gives the ``(name, value)`` pairs; :func:`build_query` the encoded string.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["build_query", "flatten", "scalar_text"]


def scalar_text(value: Any) -> str:
    """One scalar as PHP text: ``True`` → ``"1"``, ``False`` → ``"0"``, ``2.0`` → ``"2.0"``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} as a REST parameter")


def flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(bracket name, text value)`` pairs for nested ``params``, in order."""
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        yield from _flatten_value(name, value)


def _flatten_value(name: str, value: Any) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        yield from flatten(value, name)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _flatten_value(f"{name}[{index}]", item)
    else:
        yield name, scalar_text(value)


def build_query(params: Mapping[str, Any]) -> str:
    """``fields[TITLE]=a%20b&select[0]=ID``: names and values percent-encoded (UTF-8).

    Brackets in names stay readable; every other reserved character is escaped, so the
    result can itself be a value inside another query (batch double encoding).
    """
    return "&".join(
        f"{quote(name, safe='[]')}={quote(text, safe='')}" for name, text in flatten(params)
    )
