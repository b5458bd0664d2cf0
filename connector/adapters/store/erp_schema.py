"""Bring the ERP tables in line with the mappings, through Alembic's operations.

``db upgrade`` first runs the versioned ``sync_`` migrations, then this step: Alembic's
autogenerate compares the database with the tables the mappings describe and we apply the
*additive* part — new tables, new columns, new indexes and unique constraints. Nothing is
dropped or retyped automatically: a removed field's column stays (with its data), and a
changed type is reported so the operator can migrate it deliberately. Last, the outbox
triggers that capture ERP edits are installed or replaced to match the mappings
(``connector.adapters.store.outbox_triggers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.autogenerate import produce_migrations
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from connector.adapters.store.erp_tables import erp_metadata
from connector.adapters.store.outbox_triggers import install_triggers
from connector.core.mapping_model import MappingSet


@dataclass
class ErpSchemaReport:
    """What the step did, and what it would not do."""

    created_tables: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    added_indexes: list[str] = field(default_factory=list)
    kept_columns: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.created_tables or self.added_columns or self.added_indexes or self.triggers
        )

    def lines(self) -> list[str]:
        out = [f"created table {t}" for t in self.created_tables]
        out += [f"added column {c}" for c in self.added_columns]
        out += [f"added index {i}" for i in self.added_indexes]
        out += [
            f"kept unmapped column {c} (drop it yourself if its data is not needed)"
            for c in self.kept_columns
        ]
        out += [f"not changed: {r}" for r in self.refused]
        out += self.triggers
        return out


def _flatten(items: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in items:
        if isinstance(item, ops.OpContainer):
            flat += _flatten(list(item.ops))
        else:
            flat.append(item)
    return flat


def sync_erp_schema(
    engine: Engine, mappings: MappingSet, *, dry_run: bool = False
) -> ErpSchemaReport:
    """Create missing ERP tables and add missing columns; report the rest."""
    target = erp_metadata(mappings)
    names = set(target.tables)
    report = ErpSchemaReport()

    def include_name(name: str | None, type_: str, parent: Any) -> bool:
        if type_ == "table":
            return name in names
        return True

    with engine.begin() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": include_name,
                "render_as_batch": conn.dialect.name == "sqlite",
            },
        )
        script = produce_migrations(ctx, target)
        assert script.upgrade_ops is not None
        todo = _flatten(list(script.upgrade_ops.ops))
        operations = Operations(ctx)
        existing = set(inspect(conn).get_table_names())
        # Tables first, in dependency order, so child foreign keys find their parent.
        for table in target.sorted_tables:
            if table.name not in existing:
                report.created_tables.append(table.name)
                if not dry_run:
                    table.create(conn)
        for op in todo:
            if isinstance(op, ops.CreateTableOp):
                continue  # done above
            if isinstance(op, ops.AddColumnOp):
                report.added_columns.append(f"{op.table_name}.{op.column.name}")
                if not dry_run:
                    operations.invoke(op)
            elif isinstance(op, (ops.CreateIndexOp, ops.CreateUniqueConstraintOp)):
                if op.table_name in report.created_tables:
                    continue
                label = getattr(op, "index_name", None) or getattr(op, "constraint_name", "")
                report.added_indexes.append(f"{op.table_name}.{label}")
                if not dry_run:
                    operations.invoke(op)
            elif isinstance(op, ops.DropColumnOp):
                report.kept_columns.append(f"{op.table_name}.{op.column_name}")
            elif isinstance(op, ops.AlterColumnOp):
                report.refused.append(
                    f"{op.table_name}.{op.column_name} differs from the mapping "
                    f"(type {op.existing_type} → {op.modify_type or 'same'}, "
                    f"nullable → {op.modify_nullable}); migrate it by hand"
                )
            elif isinstance(op, (ops.DropIndexOp, ops.DropConstraintOp, ops.DropTableOp)):
                continue  # never drop what the operator may rely on
            else:
                report.refused.append(f"{type(op).__name__} on {getattr(op, 'table_name', '?')}")
    # The change-capture triggers follow the columns: a new mapped column is captured too.
    report.triggers = install_triggers(engine, mappings, dry_run=dry_run).lines()
    return report
