"""SQLAlchemy tables for the ERP side, built from the mappings.

Each entity gets its own table: its primary key (``key``), a unique nullable ``b24_id``,
one column per mapped field, and — under the ``mark`` delete policy — the deleted-at
column. Each multi-field gets a child table, one row per value, keeping the portal's
value ID. No connector bookkeeping lives here; that is in the ``sync_`` tables.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from connector.adapters.store.tables import NAMING
from connector.core.mapping_model import (
    DeletePolicy,
    EntityMapping,
    FieldMapping,
    FieldType,
    MappingSet,
    MultiFieldMapping,
)

Key = BigInteger().with_variant(Integer(), "sqlite")

MULTI_OWNER = "owner_id"
MULTI_VALUE_ID = "b24_value_id"
MULTI_TYPE = "value_type"
MULTI_VALUE = "value"


class LenientNumeric(TypeDecorator[Any]):
    """NUMERIC, but a value the ERP stored that is not a number comes back as it is
    (SQLite lets the ERP write text into a NUMERIC column) instead of failing the whole
    read: the merge then names the record and field (``erp_canonical``)."""

    impl = Numeric
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        def lenient(value: Any) -> Any:
            if value is None or isinstance(value, Decimal):
                return value
            try:
                return Decimal(str(value))
            except ArithmeticError:
                return value

        return lenient


def column_type(fm: FieldMapping) -> TypeEngine[Any]:
    """The SQL type that holds every valid value of ``fm``."""
    if fm.type is FieldType.STRING:
        return String(fm.length or 255)
    if fm.type is FieldType.TEXT:
        return Text()
    if fm.type is FieldType.INTEGER:
        return BigInteger()
    if fm.type is FieldType.DECIMAL:
        return LenientNumeric(fm.precision, fm.scale)
    if fm.type is FieldType.BOOLEAN:
        return Boolean()
    if fm.type is FieldType.DATE:
        return Date()
    if fm.type is FieldType.DATETIME:
        return DateTime(timezone=True)
    width = max([len(erp) for _, erp in fm.values] + [32])
    return String(width)


def entity_table(mapping: EntityMapping, metadata: MetaData) -> Table:
    columns: list[Column[Any]] = [
        Column(mapping.key, Key, primary_key=True, autoincrement=True),
        Column(
            mapping.b24_id_column,
            BigInteger,
            nullable=True,
            unique=True,
            comment=f"ID of the {mapping.entity} record in the portal",
        ),
    ]
    for fm in mapping.fields:
        columns.append(
            Column(
                fm.column,
                column_type(fm),
                nullable=True,
                comment=f"portal field {fm.portal} ({fm.direction.value})",
            )
        )
    if mapping.delete_policy is DeletePolicy.MARK:
        columns.append(
            Column(
                mapping.deleted_column,
                DateTime(timezone=True),
                nullable=True,
                comment="set when the record was deleted in the portal",
            )
        )
    return Table(
        mapping.table,
        metadata,
        *columns,
        comment=f"{mapping.entity}, synced by b24-connector from {mapping.source}",
        sqlite_autoincrement=True,  # a deleted row's key never comes back (links name it)
    )


def multifield_table(mapping: EntityMapping, mf: MultiFieldMapping, metadata: MetaData) -> Table:
    return Table(
        mf.table,
        metadata,
        Column("id", Key, primary_key=True, autoincrement=True),
        Column(
            MULTI_OWNER,
            Key,
            ForeignKey(f"{mapping.table}.{mapping.key}", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column(
            MULTI_VALUE_ID,
            BigInteger,
            nullable=True,
            unique=True,
            comment="ID of this value in the portal",
        ),
        Column(MULTI_TYPE, String(50), nullable=True, comment="WORK, HOME, MOBILE…"),
        Column(MULTI_VALUE, String(255), nullable=False),
        comment=f"{mapping.entity} {mf.portal} values, synced by b24-connector",
    )


def erp_metadata(mappings: MappingSet) -> MetaData:
    """A fresh MetaData holding every ERP table the mappings describe."""
    metadata = MetaData(naming_convention=NAMING)
    for mapping in mappings:
        entity_table(mapping, metadata)
        for mf in mapping.multifields:
            multifield_table(mapping, mf, metadata)
    return metadata
