"""What a mapping says: which portal entity goes to which ERP table, field by field.

Plain frozen dataclasses built by the mapping loader (``connector.adapters.mapping_files``)
and read by the store, the drainer and the reconciler. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    STRING = "string"
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    ENUM = "enum"


class Direction(StrEnum):
    BOTH = "both"
    TO_ERP = "to_erp"
    TO_PORTAL = "to_portal"


class ConflictPolicy(StrEnum):
    MANUAL = "manual"
    PORTAL_WINS = "portal_wins"
    ERP_WINS = "erp_wins"
    NEWER_WINS = "newer_wins"


class DeletePolicy(StrEnum):
    MARK = "mark"  # keep the row, set the deleted-at column
    DELETE = "delete"  # delete the ERP row
    IGNORE = "ignore"  # leave the row as it is


ENTITY_EVENTS: dict[str, str] = {
    "crm.company": "COMPANY",
    "crm.contact": "CONTACT",
    "crm.lead": "LEAD",
    "crm.deal": "DEAL",
}
"""Entity → the middle part of its event names (ONCRM<PART>ADD/UPDATE/DELETE)."""

MULTIFIELD_CODES = ("PHONE", "EMAIL", "WEB", "IM")


@dataclass(frozen=True)
class FieldMapping:
    """One portal field ↔ one ERP column."""

    portal: str
    column: str
    type: FieldType
    direction: Direction = Direction.BOTH
    conflict: ConflictPolicy = ConflictPolicy.MANUAL
    length: int | None = None  # STRING
    precision: int = 18  # DECIMAL
    scale: int = 2  # DECIMAL
    values: tuple[tuple[str, str], ...] = ()  # ENUM: (portal value, ERP value)
    nullable: bool = True

    def enum_to_erp(self) -> dict[str, str]:
        return dict(self.values)

    def enum_to_portal(self) -> dict[str, str]:
        return {erp: portal for portal, erp in self.values}

    @property
    def reaches_erp(self) -> bool:
        return self.direction in (Direction.BOTH, Direction.TO_ERP)

    @property
    def reaches_portal(self) -> bool:
        return self.direction in (Direction.BOTH, Direction.TO_PORTAL)


@dataclass(frozen=True)
class MultiFieldMapping:
    """A portal multi-field (PHONE, EMAIL, WEB, IM) ↔ a child table, one row per value.

    The child table keeps the portal's value ``ID`` so a change or a delete addresses the
    same value on both sides.
    """

    portal: str
    table: str
    direction: Direction = Direction.BOTH
    conflict: ConflictPolicy = ConflictPolicy.MANUAL


@dataclass(frozen=True)
class EntityMapping:
    """One portal entity ↔ one ERP table (plus a child table per multi-field)."""

    entity: str
    table: str
    source: str  # file the mapping came from, for messages
    key: str = "id"
    fields: tuple[FieldMapping, ...] = ()
    multifields: tuple[MultiFieldMapping, ...] = ()
    delete_policy: DeletePolicy = DeletePolicy.MARK
    deleted_column: str = "b24_deleted_at"
    b24_id_column: str = "b24_id"

    @property
    def event_part(self) -> str:
        return ENTITY_EVENTS[self.entity]

    def event_names(self) -> tuple[str, str, str]:
        part = self.event_part
        return (f"ONCRM{part}ADD", f"ONCRM{part}UPDATE", f"ONCRM{part}DELETE")

    def field_by_portal(self, code: str) -> FieldMapping | None:
        return next((f for f in self.fields if f.portal == code), None)

    def portal_codes(self) -> list[str]:
        """Fields to ``select`` when reading this entity from the portal."""
        codes = ["ID", *(f.portal for f in self.fields)]
        codes += [m.portal for m in self.multifields]
        if "DATE_MODIFY" not in codes:  # the portal side's modification time (newer_wins)
            codes.append("DATE_MODIFY")
        return codes


@dataclass(frozen=True)
class MappingSet:
    """All loaded mappings, by entity."""

    entities: dict[str, EntityMapping] = field(default_factory=dict)

    def __iter__(self) -> Iterator[EntityMapping]:
        return iter(self.entities.values())

    def get(self, entity: str) -> EntityMapping | None:
        return self.entities.get(entity)

    def by_event(self, event_name: str) -> tuple[EntityMapping, str] | None:
        """``ONCRMCOMPANYUPDATE`` → (company mapping, ``UPDATE``), or None if unmapped."""
        name = event_name.upper()
        for mapping in self.entities.values():
            prefix = f"ONCRM{mapping.event_part}"
            action = name.removeprefix(prefix)
            if name.startswith(prefix) and action in ("ADD", "UPDATE", "DELETE"):
                return mapping, action
        return None
