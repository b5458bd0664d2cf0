"""The forms a record takes on its way between the portal and the ERP tables.

* :func:`portal_side` — a portal record as the merge compares it: each mapped field in its
  canonical ERP form, each multi-field as ``{value ID: (type, value)}``;
  :func:`multi_key` the order-free form of one multi-field;
* :func:`stored_base` / :func:`new_base` — the merge base as ``sync_link.base`` stores it
  (portal strings, multi-fields as pairs, a :class:`~connector.core.merge.Split` as
  ``{"__split__": [portal, ERP]}``) and back;
* :func:`conflict_fields` — a merge's conflicts as ``sync_conflict.fields`` stores them;
* :func:`db_value` — a value as the dialect's column takes it; :func:`json_safe` and
  :func:`json_safe_deep` — values for a JSON column.

Pure functions over one record; a value that cannot be held raises
:class:`~connector.errors.RecordError` naming the entity, record and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from connector.core.field_values import canonical, to_erp, to_portal
from connector.core.mapping_model import EntityMapping, FieldMapping, FieldType
from connector.core.merge import MergeResult, Split
from connector.errors import RecordError

__all__ = [
    "SPLIT",
    "MultiValue",
    "conflict_fields",
    "db_value",
    "json_safe",
    "json_safe_deep",
    "multi_from_portal",
    "multi_key",
    "naive_utc",
    "new_base",
    "portal_side",
    "stored_base",
]

MultiValue = tuple[tuple[str, str], ...]
_ABSENT = object()
_TEXT = (FieldType.STRING, FieldType.TEXT)
SPLIT = "__split__"
"""How a :class:`Split` base is stored: ``{"__split__": [portal value, ERP value]}``."""


def json_safe(value: Any) -> Any:
    kind = type(value)
    if kind is str or value is None or kind is int:  # the common case, first
        return value
    if kind is tuple:
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [json_safe(v) for v in value]
    return value


def json_safe_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): json_safe_deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe_deep(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def db_value(conn: Connection, value: Any) -> Any:
    if isinstance(value, datetime) and conn.dialect.name != "postgresql":
        return naive_utc(value)
    return value


def naive_utc(value: datetime) -> datetime:
    """An aware time as SQLite and MariaDB store it: UTC, without a zone."""
    return value.astimezone(UTC).replace(tzinfo=None)


def portal_side(m: EntityMapping, b24_id: int, record: Mapping[str, Any]) -> dict[str, Any]:
    side: dict[str, Any] = {}
    for fm in m.fields:
        raw = record.get(fm.portal, _ABSENT)
        if raw is _ABSENT:
            continue
        if (  # most fields: a text that fits is its own canonical form (the same test
            type(raw) is str  # as to_erp's first line; canonical keeps such a text)
            and raw
            and fm.type in _TEXT
            and (fm.length is None or len(raw) <= fm.length)
        ):
            side[fm.portal] = raw
            continue
        side[fm.portal] = canonical(fm, to_erp(fm, raw, entity=m.entity, record_id=b24_id))
    # The portal leaves an empty multi-field out of a list answer even when it was
    # selected (every read here selects them all): absent means "no values".
    for mf in m.multifields:
        side[mf.portal] = multi_from_portal(m, b24_id, mf.portal, record.get(mf.portal))
    return side


def multi_from_portal(
    m: EntityMapping, b24_id: int, code: str, raw: Any
) -> dict[int, tuple[str, str]]:
    if raw in (None, "", []):
        return {}
    items = raw.values() if isinstance(raw, Mapping) else raw
    if not isinstance(items, (list, tuple)) and not isinstance(raw, Mapping):
        raise RecordError(
            f"expected a list of values, got {type(raw).__name__}",
            entity=m.entity,
            record_id=b24_id,
            field=code,
        )
    out: dict[int, tuple[str, str]] = {}
    for item in items:
        if not (type(item) is dict or isinstance(item, Mapping)) or "VALUE" not in item:
            raise RecordError(
                "multi-field value without VALUE", entity=m.entity, record_id=b24_id, field=code
            )
        try:
            value_id = int(item.get("ID"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RecordError(
                "multi-field value without a numeric ID",
                entity=m.entity,
                record_id=b24_id,
                field=code,
            ) from None
        value = str(item["VALUE"])
        if len(value) > 255:
            raise RecordError(
                f"{len(value)} characters do not fit (255)",
                entity=m.entity,
                record_id=b24_id,
                field=code,
            )
        out[value_id] = (str(item.get("VALUE_TYPE") or ""), value)
    return out


def multi_key(values: Mapping[int, tuple[str, str]]) -> MultiValue:
    return tuple(sorted(values.values()))


def stored_base(m: EntityMapping, stored: Any) -> dict[str, Any] | None:
    if not isinstance(stored, Mapping):
        return None
    base: dict[str, Any] = {}

    def plain(fm: FieldMapping, raw: Any) -> Any:
        return canonical(fm, to_erp(fm, raw, entity=m.entity, record_id=None))

    def pairs(raw: Any) -> MultiValue:
        return tuple(tuple(pair) for pair in raw or ())

    for fm in m.fields:
        if fm.portal in stored:
            raw = stored[fm.portal]
            split = raw.get(SPLIT) if isinstance(raw, Mapping) else None
            base[fm.portal] = (
                Split(plain(fm, split[0]), plain(fm, split[1]))
                if isinstance(split, list)
                else plain(fm, raw)
            )
    for mf in m.multifields:
        if mf.portal in stored:
            raw = stored[mf.portal]
            split = raw.get(SPLIT) if isinstance(raw, Mapping) else None
            base[mf.portal] = (
                Split(pairs(split[0]), pairs(split[1])) if isinstance(split, list) else pairs(raw)
            )
    return base


def new_base(
    m: EntityMapping, old: Mapping[str, Any] | None, result: MergeResult
) -> dict[str, Any]:
    merged: dict[str, Any] = dict(old or {})
    for name, value in result.agreed.items():
        if name not in result.to_portal:  # not agreed until the portal has it
            merged[name] = value
    merged.update(result.split)
    out: dict[str, Any] = {}
    for fm in m.fields:
        if fm.portal in merged:
            value = merged[fm.portal]
            if isinstance(value, Split):
                out[fm.portal] = {
                    SPLIT: [
                        to_portal(fm, value.portal, entity=m.entity, record_id=None),
                        to_portal(fm, value.erp, entity=m.entity, record_id=None),
                    ]
                }
            elif type(value) is str and fm.type in _TEXT:  # to_portal's str(value)
                out[fm.portal] = value
            else:
                out[fm.portal] = to_portal(fm, value, entity=m.entity, record_id=None)
    for mf in m.multifields:
        if mf.portal in merged:
            value = merged[mf.portal]
            if isinstance(value, Split):
                out[mf.portal] = {SPLIT: [json_safe(value.portal), json_safe(value.erp)]}
            else:  # pairs of strings (MultiValue): json_safe's lists, built directly
                out[mf.portal] = [[kind, text] for kind, text in value]
    return out


def conflict_fields(result: MergeResult) -> dict[str, Any]:
    return {
        name: {
            "base": json_safe(s.base),
            "portal": json_safe(s.portal),
            "erp": json_safe(s.erp),
        }
        for name, s in result.conflicts.items()
    }


# --- delete ------------------------------------------------------------------------
