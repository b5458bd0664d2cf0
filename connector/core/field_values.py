"""Converting one field's value between the portal's REST form and the ERP column's form.

The portal sends most scalars as strings (``"12"``, ``"Y"``, ``"1500.00"``,
``"2024-03-01T10:00:00+03:00"``); the ERP column holds typed values. Both directions are
total over valid input and raise :class:`RecordError` naming entity, record and field
when a value cannot be held — never a bare ``ValueError``.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.core.mapping_model import FieldMapping, FieldType
from connector.errors import RecordError

ErpValue = str | int | Decimal | bool | date | datetime | None

_TRUE = {"Y", "1", "TRUE", "T"}
_FALSE = {"N", "0", "FALSE", "F", ""}


def _empty(raw: Any) -> bool:
    return raw is None or raw == "" or raw == []


_TEXT = (FieldType.STRING, FieldType.TEXT)


def to_erp(fm: FieldMapping, raw: Any, *, entity: str, record_id: object) -> ErpValue:
    """The portal's value of ``fm`` → the value for its ERP column."""
    if (  # most fields: a plain string that fits
        type(raw) is str
        and raw
        and fm.type in _TEXT
        and (fm.length is None or len(raw) <= fm.length)
    ):
        return raw

    if fm.type is FieldType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        text = "" if raw is None else str(raw).strip().upper()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return None if raw is None else False
        raise _bad(fm, f"{raw!r} is not a Y/N boolean", entity, record_id)
    if _empty(raw):
        return None
    if isinstance(raw, (dict, list)):
        raise _bad(fm, f"expected a single value, got {type(raw).__name__}", entity, record_id)
    if fm.type in (FieldType.STRING, FieldType.TEXT):
        text = str(raw)
        if fm.length is not None and len(text) > fm.length:
            raise _bad(
                fm,
                f"{len(text)} characters do not fit column {fm.column} ({fm.length})",
                entity,
                record_id,
            )
        return text
    if fm.type is FieldType.INTEGER:
        try:
            return int(str(raw).strip())
        except ValueError:
            raise _bad(fm, f"{raw!r} is not an integer", entity, record_id) from None
    if fm.type is FieldType.DECIMAL:
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation:
            raise _bad(fm, f"{raw!r} is not a number", entity, record_id) from None
        if not number.is_finite():
            raise _bad(fm, f"{raw!r} is not a finite number", entity, record_id)
        quantized = number.quantize(_quantum(fm.scale))
        digits = len(quantized.as_tuple().digits)
        if digits > fm.precision:
            raise _bad(
                fm,
                f"{raw} does not fit column {fm.column} (precision {fm.precision})",
                entity,
                record_id,
            )
        return quantized
    if fm.type is FieldType.DATE:
        text = str(raw).strip()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise _bad(fm, f"{raw!r} is not a date", entity, record_id) from None
    if fm.type is FieldType.DATETIME:
        try:
            moment = datetime.fromisoformat(str(raw).strip())
        except ValueError:
            raise _bad(fm, f"{raw!r} is not an ISO-8601 date-time", entity, record_id) from None
        if moment.tzinfo is None:
            raise _bad(fm, f"{raw!r} has no UTC offset", entity, record_id)
        return moment.astimezone(UTC)
    if fm.type is FieldType.ENUM:
        table = fm.enum_to_erp()
        key = str(raw)
        if key not in table:
            raise _bad(
                fm, f"{key!r} is not one of the mapped values {sorted(table)}", entity, record_id
            )
        return table[key]
    raise _bad(
        fm, f"unsupported type {fm.type}", entity, record_id
    )  # pragma: no cover - enum is exhaustive


def to_portal(fm: FieldMapping, value: ErpValue, *, entity: str, record_id: object) -> str:
    """An ERP column value → the string the portal accepts for ``fm``."""
    if value is None:
        return "N" if fm.type is FieldType.BOOLEAN else ""
    if fm.type is FieldType.BOOLEAN:
        return "Y" if value else "N"
    if fm.type is FieldType.DATETIME and isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat(timespec="seconds")
    if fm.type is FieldType.DATE and isinstance(value, date):
        return value.isoformat()
    if fm.type is FieldType.ENUM:
        table = fm.enum_to_portal()
        if str(value) not in table:
            raise RecordError(
                f"{value!r} is not one of the mapped values {sorted(table)}",
                entity=entity,
                record_id=_rid(record_id),
                field=fm.portal,
            )
        return table[str(value)]
    if fm.type is FieldType.DECIMAL:
        return format(Decimal(str(value)), "f")
    return str(value)


def canonical(fm: FieldMapping, value: ErpValue) -> ErpValue:
    """A form in which equal values compare equal (for the three-way merge)."""
    if value is None or value == "":
        return False if fm.type is FieldType.BOOLEAN else None
    if fm.type is FieldType.DECIMAL:
        if type(value) is Decimal and value.as_tuple().exponent == -fm.scale:
            return value  # to_erp's form already
        return Decimal(str(value)).quantize(_quantum(fm.scale))
    if fm.type is FieldType.DATETIME and isinstance(value, datetime):
        if value.tzinfo is UTC and not value.microsecond:  # to_erp's form already
            return value
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)
    return value


def erp_canonical(fm: FieldMapping, value: ErpValue, *, entity: str, record_id: object) -> ErpValue:
    """:func:`canonical` of a value read from the ERP's own column, which the ERP may have
    filled with anything its database let it (SQLite stores text in a NUMERIC column):
    a value that is not of the field's type is a :class:`RecordError` naming the field."""
    try:
        return canonical(fm, value)
    except (ArithmeticError, ValueError, TypeError):
        raise RecordError(
            f"the ERP column {fm.column} holds {str(value)[:40]!r}, not a {fm.type.value}",
            entity=entity,
            record_id=_rid(record_id),
            field=fm.portal,
        ) from None


@functools.cache
def _quantum(scale: int) -> Decimal:
    """``10**-scale``, the step a column of that scale rounds to."""
    return Decimal(1).scaleb(-scale)


def _bad(fm: FieldMapping, reason: str, entity: str, record_id: object) -> RecordError:
    """The error naming entity, record and field (built only when a value fails)."""
    return RecordError(reason, entity=entity, record_id=_rid(record_id), field=fm.portal)


def _rid(record_id: object) -> str | int | None:
    return record_id if isinstance(record_id, (str, int)) or record_id is None else str(record_id)
