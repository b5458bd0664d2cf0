"""The demo's SQL (``b24-connector demo``, :mod:`connector.service.demo`).

What it reads back to tell what happened — rows per table, a company's phones, the
conflicts and their status — on the connector's engine, and the ERP's own edits: plain
``UPDATE`` statements on ``erp_company`` through a connection of their own (not the
connector's), as an ERP application would make them, so the outbox triggers see them.
The tables are those of the shipped mappings.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

__all__ = ["company_phones", "conflict_statuses", "conflicts_seen", "erp_edit_company", "row_count"]


def _rows(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params or {}).mappings()]


def row_count(engine: Engine, table: str) -> int:
    """Rows in ``table`` (a mapped table's name from the mappings)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def company_phones(engine: Engine, b24_id: int) -> list[str]:
    """The phone numbers the ERP holds for the company linked to portal ID ``b24_id``."""
    rows = _rows(
        engine,
        "SELECT p.value FROM erp_company_phone p JOIN "
        "erp_company c ON c.id = p.owner_id WHERE c.b24_id = :id",
        {"id": int(b24_id)},
    )
    return [r["value"] for r in rows]


def conflicts_seen(engine: Engine) -> list[dict[str, Any]]:
    """Every conflict row: id, entity, b24_id and fields (as the driver returns them)."""
    return _rows(engine, "SELECT id, entity, b24_id, fields FROM sync_conflict")


def conflict_statuses(engine: Engine) -> list[str]:
    """The status of every conflict row."""
    return [str(r["status"]) for r in _rows(engine, "SELECT status FROM sync_conflict")]


def erp_edit_company(database_url: str, b24_id: int, column: str, value: str) -> None:
    """Set ``column`` of the ERP's company row linked to ``b24_id``, as the ERP would: on
    an engine of its own, in a transaction of its own (the triggers record it)."""
    erp = sa.create_engine(database_url)
    try:
        with erp.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE erp_company SET {column} = :v WHERE b24_id = :id"),
                {"v": value, "id": b24_id},
            )
    finally:
        erp.dispose()
