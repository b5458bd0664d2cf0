"""Bitrix24 list filters and orders: ``{"<op>FIELD": value}`` and ``{FIELD: ASC|DESC}``.

The operator is the run of non-word characters before the field name (``>=ID``,
``!=STATUS_ID``, ``%TITLE``, ``@ID``, ``!@ID``); no prefix means equality. A list value
with ``=``/no prefix means "one of" (as ``@``), with ``!``/``!=`` "none of".

Values are compared by a *kind* the caller supplies per field: ``"int"``, ``"float"``,
``"date"`` (ISO-8601 strings or epoch seconds) or ``"str"``. ``None`` and ``""`` are
both "empty" and equal to each other, as in the portal's SQL. The exception is a range
operator (``>``, ``>=``, ``<``, ``<=``) on a ``"str"`` field: ``CSQLWhere`` writes it as a
plain string comparison, so ``{">PROCESS_ID": ""}`` matches every non-empty value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from connector.emulator.rest_errors import RestError

_KEY = re.compile(r"^([^\w]*)(\w+)$")

T = TypeVar("T")

ALL_OPERATORS = frozenset(
    {"", "=", "!", "!=", ">", ">=", "<", "<=", "%", "!%", "@", "!@", "=%", "%=", "<>"}
)


@dataclass(frozen=True)
class Condition:
    """One parsed filter entry."""

    op: str
    field: str
    value: Any


def parse_filter(
    raw: object,
    *,
    allowed_fields: Iterable[str] | None = None,
    allowed_ops: Iterable[str] = ALL_OPERATORS,
    error_code: str = "ERROR_ARGUMENT",
) -> list[Condition]:
    """Parse a filter mapping into conditions; field names are upper-cased.

    Unknown fields or operators raise ``RestError(error_code, ...)`` with the portal's
    wording ("Filter field not allowed: X", "Filter operation not allowed: X").
    """
    if raw is None or raw == "" or raw == []:
        return []
    if not isinstance(raw, Mapping):
        raise RestError(error_code, "The filter is not an array.")
    fields = None if allowed_fields is None else {f.upper() for f in allowed_fields}
    ops = set(allowed_ops)
    result: list[Condition] = []
    for key, value in raw.items():
        match = _KEY.match(str(key).strip())
        if match is None:
            raise RestError(error_code, f"Filter field not allowed: {key}")
        op, name = match.group(1), match.group(2).upper()
        if fields is not None and name not in fields:
            raise RestError(error_code, f"Filter field not allowed: {name}")
        if op not in ops:
            raise RestError(error_code, f"Filter operation not allowed: {op}")
        result.append(Condition(op, name, value))
    return result


def parse_order(
    raw: object, *, allowed_fields: Iterable[str] | None = None, error_code: str = "ERROR_ARGUMENT"
) -> list[tuple[str, bool]]:
    """Parse ``{FIELD: ASC|DESC}`` into ``[(FIELD, descending)]``."""
    if raw is None or raw == "" or raw == []:
        return []
    if not isinstance(raw, Mapping):
        raise RestError(error_code, "The order is not an array.")
    fields = None if allowed_fields is None else {f.upper() for f in allowed_fields}
    result: list[tuple[str, bool]] = []
    for key, direction in raw.items():
        name = str(key).strip().upper()
        if fields is not None and name not in fields:
            raise RestError(error_code, f"Order field not allowed: {name}")
        word = str(direction).strip().upper()
        if word not in ("ASC", "DESC"):
            raise RestError(error_code, "Order direction should be one of {ASC|DESC}")
        result.append((name, word == "DESC"))
    return result


def as_list(value: object) -> list[Any]:
    """A PHP array as a list: lists stay, ``{"0": a, "1": b}`` maps become ``[a, b]``."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return list(value.values())
    return [value]


def to_epoch(value: object) -> float | None:
    """ISO-8601 (with or without offset), a date, or epoch seconds → epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp()


def normalise(value: object, kind: str) -> Any:
    """Bring a stored or filter value to a comparable form (``None`` for empty)."""
    if value is None or value == "" or value is False:
        return None
    try:
        if kind == "int":
            return int(float(str(value)))
        if kind == "float":
            return float(str(value))
    except ValueError:
        return str(value)
    if kind == "date":
        return to_epoch(value)
    if kind == "bool":
        return "Y" if str(value).upper() in ("Y", "1", "TRUE") else "N"
    return str(value)


def _compare(stored: Any, op: str, wanted: Any) -> bool:
    if stored is None or wanted is None:
        return False
    try:
        if op == ">":
            return bool(stored > wanted)
        if op == ">=":
            return bool(stored >= wanted)
        if op == "<":
            return bool(stored < wanted)
        return bool(stored <= wanted)
    except TypeError:
        return bool(str(stored) > str(wanted)) if op == ">" else False


def _sql_text(value: object) -> str | None:
    """A string column's value as SQL sees it: NULL stays ``None``, anything else text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value).lower()


def _text_range(stored: object, op: str, wanted: object) -> bool:
    """``FIELD > 'value'`` on a string column, as ``CSQLWhere::addStringFilter`` writes it
    (no special case for ``''``, unlike ``=``): ``>''`` is every non-empty value and
    ``<''`` nothing; NULL compares false. Case-insensitive, like the ``_ci`` collation."""
    text, bound = _sql_text(stored), _sql_text(wanted) or ""
    if text is None:
        return False
    return _compare(text, op, bound)


def _equal(stored: Any, wanted: Any) -> bool:
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored.lower() == wanted.lower()
    return bool(stored == wanted)


def value_matches(values: list[Any], cond: Condition, kind: str) -> bool:
    """Does a field holding ``values`` (one for scalars, many for multi-fields) match?"""
    stored = [normalise(v, kind) for v in values] or [None]
    op = cond.op
    negate = op.startswith("!") or op == "<>"
    base = op.lstrip("!") if op != "<>" else "="
    raw_wanted = (
        as_list(cond.value) if isinstance(cond.value, list | tuple | Mapping) else [cond.value]
    )
    wanted = [normalise(w, kind) for w in raw_wanted]
    if base in ("", "=", "@") or (base == "%" and wanted == [None] and kind == "str"):
        # ``%FIELD: ""`` is ``_Empty(FIELD)`` in CSQLWhere, the same as ``=FIELD: ""``.
        hit = any(_equal(s, w) for s in stored for w in wanted)
    elif base in ("%", "=%", "%="):
        needles = [str(w).lower() for w in wanted if w is not None]
        hit = any(s is not None and any(n in str(s).lower() for n in needles) for s in stored)
    elif base in (">", ">=", "<", "<=") and kind == "str":
        hit = any(_text_range(v, base, w) for v in values or [None] for w in raw_wanted)
    elif base in (">", ">=", "<", "<="):
        hit = any(_compare(s, base, w) for s in stored for w in wanted)
    else:
        raise RestError("ERROR_ARGUMENT", f"Filter operation not allowed: {op}")
    return not hit if negate else hit


def matches(
    conditions: list[Condition], getter: Callable[[str], list[Any]], kind_of: Callable[[str], str]
) -> bool:
    """True if a row passes every condition; ``getter(FIELD)`` gives its values."""
    return all(value_matches(getter(c.field), c, kind_of(c.field)) for c in conditions)


def sort_rows(
    rows: list[T],
    order: list[tuple[str, bool]],
    getter: Callable[[T, str], Any],
    kind_of: Callable[[str], str],
) -> list[T]:
    """Stable multi-key sort; empty values sort first ascending (as MySQL does)."""
    result = list(rows)
    for field, descending in reversed(order):
        kind = kind_of(field)

        def key(row: T, field: str = field, kind: str = kind) -> tuple[int, Any]:
            value = normalise(getter(row, field), kind)
            if value is None:
                return (0, 0)
            if isinstance(value, str):
                return (1, value.lower())
            return (1, value)

        result.sort(key=key, reverse=descending)
    return result


@dataclass(frozen=True)
class IdRange:
    """The IDs an ID filter lets through.

    ``low``/``high`` are inclusive (``None`` = open); ``members`` is the set of IDs an
    equality / ``@`` condition allows (``None`` = any). A row outside them cannot pass.
    ``covered`` are the conditions the window states exactly (a row inside it passes
    them), so only the other conditions need checking row by row.
    """

    low: int | None = None
    high: int | None = None
    members: frozenset[int] | None = None
    covered: tuple[Condition, ...] = ()

    def allows(self, value: int) -> bool:
        return (
            (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.members is None or value in self.members)
        )

    def rest(self, conditions: Iterable[Condition]) -> list[Condition]:
        """``conditions`` without the ones this window covers."""
        return [c for c in conditions if not any(c is k for k in self.covered)]


def id_range(conditions: Iterable[Condition], field: str = "ID") -> IdRange:
    """The window the plain (not negated) ``>``, ``>=``, ``<``, ``<=``, ``=`` and ``@``
    conditions on the positive integer ``field`` leave open, as :func:`value_matches`
    reads them.

    Values that can never match (``None``, an empty list, text for anything but ``>``)
    are dropped; a condition left with none matches no row. Text that ``>`` could still
    match (it compares text with text) gives no bound and stays uncovered, so the window
    never excludes a row the filter would pass.
    """
    low: int | None = None
    high: int | None = None
    members: frozenset[int] | None = None
    covered: list[Condition] = []
    for cond in conditions:
        if cond.field != field or cond.op not in ("", "=", "@", ">", ">=", "<", "<="):
            continue
        raw = (
            as_list(cond.value) if isinstance(cond.value, list | tuple | Mapping) else [cond.value]
        )
        try:
            wanted = [normalise(w, "int") for w in raw]
        except (ValueError, OverflowError):
            continue
        if not all(w is None or isinstance(w, int | str) for w in wanted):
            continue
        if cond.op in ("", "=", "@"):
            # text and empty values never equal a stored ID, so only the numbers count
            allowed = frozenset(w for w in wanted if isinstance(w, int))
            members = allowed if members is None else members & allowed
            covered.append(cond)
            continue
        if cond.op == ">" and any(isinstance(w, str) and w[:1] <= "9" for w in wanted):
            # ``>`` falls back to comparing text: str(ID) > "-x" can hold for any ID
            continue
        covered.append(cond)
        numbers = [w for w in wanted if isinstance(w, int)]
        if not numbers:
            # empty, NULL or text (never above a positive ID's digits): nothing matches,
            # as for a batch reference past the end of the previous page
            members = frozenset()
        elif cond.op in (">", ">="):
            bound = min(numbers) + (1 if cond.op == ">" else 0)
            low = bound if low is None else max(low, bound)
        else:
            bound = max(numbers) - (1 if cond.op == "<" else 0)
            high = bound if high is None else min(high, bound)
    return IdRange(low, high, members, tuple(covered))
