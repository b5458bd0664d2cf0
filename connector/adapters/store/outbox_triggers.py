"""Change capture: triggers on the mapped ERP tables write every ERP edit to ``sync_outbox``.

The capture runs inside the ERP's own transaction, so an edit made while the connector is
stopped is recorded all the same, and a rolled-back edit leaves nothing behind. For each
mapped table whose fields may travel to the portal:

* an insert records ``op=insert`` with every watched column;
* an update records ``op=update`` with the watched columns whose value changed (an update
  that changes none of them records nothing);
* a delete records ``op=delete``;
* an insert, update or delete on a multi-field child table records ``op=update`` for the
  owner row, naming the child table.

Watched columns are the fields whose direction lets them reach the portal (``both`` and
``to_portal``); ``to_erp`` columns belong to the portal and are not captured.

The connector's own writes are invisible to the triggers: they run in
:func:`connector.adapters.store.database.write_transaction`, which marks the transaction
(PostgreSQL: a transaction-local setting; MariaDB: a session variable; SQLite: a marker
row in ``sync_echo`` that no other connection can see).

Every trigger's name ends with a hash of its definition, so :func:`trigger_problems` can
tell a missing trigger from a stale one (the mapping changed since ``db upgrade``) without
parsing SQL, and :func:`install_triggers` replaces exactly the ones that differ.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.database import ECHO_SETTING, ECHO_TABLE, ECHO_VARIABLE
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE
from connector.core.mapping_model import EntityMapping, MappingSet

PREFIX = "b24ob_"
_OUTBOX_COLUMNS = "entity, erp_key, op, changed, created_at"


@dataclass(frozen=True)
class TriggerSpec:
    """One trigger (PostgreSQL: one trigger and its function) on one ERP table."""

    table: str
    name: str
    create: tuple[str, ...]


@dataclass
class TriggerReport:
    """Trigger names installed and dropped, and the tables they are on."""

    installed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.dropped:
            out.append(f"dropped {len(self.dropped)} stale outbox triggers")
        if self.installed:
            out.append(f"installed outbox triggers on {', '.join(dict.fromkeys(self.tables))}")
        return out


@dataclass(frozen=True)
class _Capture:
    """What one table's triggers record: the entity, the key column, the watched columns."""

    table: str
    entity: str
    key: str
    watched: tuple[str, ...]
    child_of: str | None = None  # the child table's name as recorded in ``changed``


def captures(mappings: MappingSet) -> list[_Capture]:
    """Every table that gets triggers, parents before their children."""
    out: list[_Capture] = []
    for m in mappings:
        watched = tuple(fm.column for fm in m.fields if fm.reaches_portal)
        children = [mf for mf in m.multifields if mf.direction.value != "to_erp"]
        if not watched and not children:
            continue
        out.append(_Capture(m.table, m.entity, m.key, watched))
        for mf in children:
            out.append(
                _Capture(mf.table, m.entity, MULTI_OWNER, (MULTI_TYPE, MULTI_VALUE), mf.table)
            )
    return out


def mapped_tables(m: EntityMapping) -> list[str]:
    return [m.table, *(mf.table for mf in m.multifields)]


# --- SQL per dialect ---------------------------------------------------------------------


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(table: str, op: str, body: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()[:8]
    return f"{PREFIX}{table[:40]}_{op}_{digest}"


def _all_changed(c: _Capture) -> str:
    return json.dumps([c.child_of] if c.child_of else list(c.watched))


def _sqlite(c: _Capture) -> list[TriggerSpec]:
    guard = f"NOT EXISTS (SELECT 1 FROM {ECHO_TABLE})"
    specs: list[TriggerSpec] = []
    for op, event, row in (("i", "INSERT", "NEW"), ("u", "UPDATE", "NEW"), ("d", "DELETE", "OLD")):
        when = guard
        if c.child_of is not None:
            kind = "update"
            changed = _lit(_all_changed(c))
        elif op == "i":
            kind, changed = "insert", _lit(_all_changed(c))
        elif op == "d":
            kind, changed = "delete", "NULL"
        else:
            kind = "update"
            parts = " || ".join(
                f"CASE WHEN NEW.{col} IS NOT OLD.{col} THEN '\"{col}\",' ELSE '' END"
                for col in c.watched
            )
            changed = f"'[' || rtrim({parts}, ',') || ']'"
        if op == "u":
            when += " AND (" + " OR ".join(f"NEW.{col} IS NOT OLD.{col}" for col in c.watched) + ")"
        body = (
            f"AFTER {event} ON {c.table} FOR EACH ROW WHEN {when} BEGIN "
            f"INSERT INTO sync_outbox ({_OUTBOX_COLUMNS}) VALUES ({_lit(c.entity)}, "
            f"CAST({row}.{c.key} AS TEXT), {_lit(kind)}, {changed}, CURRENT_TIMESTAMP); END"
        )
        name = _name(c.table, op, body)
        specs.append(TriggerSpec(c.table, name, (f"CREATE TRIGGER {name} {body}",)))
    return specs


def _postgresql(c: _Capture) -> list[TriggerSpec]:
    insert = f"INSERT INTO sync_outbox ({_OUTBOX_COLUMNS}) VALUES ({_lit(c.entity)}, "
    distinct = [f"NEW.{col} IS DISTINCT FROM OLD.{col}" for col in c.watched]
    if c.child_of is not None:
        changed = f"{_lit(_all_changed(c))}::json"
        body = (
            "IF TG_OP = 'DELETE' THEN "
            f"{insert}OLD.{c.key}::text, 'update', {changed}, clock_timestamp()); "
            f"ELSIF TG_OP = 'INSERT' OR {' OR '.join(distinct)} THEN "
            f"{insert}NEW.{c.key}::text, 'update', {changed}, clock_timestamp()); END IF;"
        )
    else:
        cases = ", ".join(
            f"CASE WHEN NEW.{col} IS DISTINCT FROM OLD.{col} THEN {_lit(col)} END"
            for col in c.watched
        )
        body = (
            "IF TG_OP = 'INSERT' THEN "
            f"{insert}NEW.{c.key}::text, 'insert', {_lit(_all_changed(c))}::json, "
            "clock_timestamp()); "
            "ELSIF TG_OP = 'DELETE' THEN "
            f"{insert}OLD.{c.key}::text, 'delete', NULL, clock_timestamp()); "
            f"ELSE changed := array_remove(ARRAY[{cases or 'NULL'}]::text[], NULL); "
            "IF cardinality(changed) > 0 THEN "
            f"{insert}NEW.{c.key}::text, 'update', to_json(changed), clock_timestamp()); "
            "END IF; END IF;"
        )
    function = (
        "RETURNS trigger LANGUAGE plpgsql AS $b24$ DECLARE changed text[]; BEGIN "
        f"IF coalesce(current_setting('{ECHO_SETTING}', true), '') = 'on' THEN RETURN NULL; "
        f"END IF; {body} RETURN NULL; END $b24$"
    )
    name = _name(c.table, "x", f"{c.table} {function}")
    return [
        TriggerSpec(
            c.table,
            name,
            (
                f"CREATE OR REPLACE FUNCTION {name}() {function}",
                f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {c.table} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()",
            ),
        )
    ]


def _mysql(c: _Capture) -> list[TriggerSpec]:
    specs: list[TriggerSpec] = []
    differs = [f"NOT (NEW.{col} <=> OLD.{col})" for col in c.watched]
    for op, event, row in (("i", "INSERT", "NEW"), ("u", "UPDATE", "NEW"), ("d", "DELETE", "OLD")):
        condition = f"{ECHO_VARIABLE} IS NULL"
        if c.child_of is not None:
            kind, changed = "update", _lit(_all_changed(c))
        elif op == "i":
            kind, changed = "insert", _lit(_all_changed(c))
        elif op == "d":
            kind, changed = "delete", "NULL"
        else:
            kind = "update"
            parts = ", ".join(
                f"IF({d}, '\"{col}\"', NULL)" for d, col in zip(differs, c.watched, strict=True)
            )
            changed = f"CONCAT('[', CONCAT_WS(',', {parts}), ']')"
        if op == "u":
            condition += " AND (" + " OR ".join(differs) + ")"
        body = (
            f"AFTER {event} ON {c.table} FOR EACH ROW BEGIN IF {condition} THEN "
            f"INSERT INTO sync_outbox ({_OUTBOX_COLUMNS}) VALUES ({_lit(c.entity)}, "
            f"CAST({row}.{c.key} AS CHAR), {_lit(kind)}, {changed}, UTC_TIMESTAMP(6)); "
            "END IF; END"
        )
        name = _name(c.table, op, body)
        specs.append(TriggerSpec(c.table, name, (f"CREATE TRIGGER {name} {body}",)))
    return specs


def trigger_specs(mappings: MappingSet, dialect: str) -> list[TriggerSpec]:
    """The triggers the mappings call for on ``dialect``."""
    build = {"sqlite": _sqlite, "postgresql": _postgresql, "mysql": _mysql, "mariadb": _mysql}
    if dialect not in build:
        raise ValueError(f"no outbox triggers for the {dialect} dialect")
    specs: list[TriggerSpec] = []
    for capture in captures(mappings):
        specs += build[dialect](capture)
    return specs


# --- what is there -----------------------------------------------------------------------


def existing_triggers(conn: Connection) -> dict[str, str]:
    """Our outbox triggers in the database: name → table."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
    elif dialect == "postgresql":
        sql = (
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
        )
    else:
        sql = (
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE()"
        )
    rows = conn.execute(sa.text(sql)).all()
    return {str(r[0]): str(r[1]) for r in rows if str(r[0]).startswith(PREFIX)}


def _drop(conn: Connection, name: str, table: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


def install_triggers(
    engine: Engine, mappings: MappingSet, *, dry_run: bool = False
) -> TriggerReport:
    """Create the missing triggers and drop stale or unmapped ones (idempotent)."""
    report = TriggerReport()
    with engine.begin() as conn:
        wanted = trigger_specs(mappings, conn.dialect.name)
        tables = set(sa.inspect(conn).get_table_names())
        if not {"sync_outbox", ECHO_TABLE} <= tables:
            return report  # the sync_ tables come first (db upgrade migrates them before this)
        have = existing_triggers(conn)
        wanted_names = {s.name for s in wanted}
        for name, table in sorted(have.items()):
            if name not in wanted_names:
                report.dropped.append(name)
                if not dry_run:
                    _drop(conn, name, table)
        for spec in wanted:
            if spec.name in have or spec.table not in tables:
                continue
            report.installed.append(spec.name)
            report.tables.append(spec.table)
            if not dry_run:
                for statement in spec.create:
                    conn.exec_driver_sql(statement)
    return report


def trigger_problems(engine: Engine, mappings: MappingSet) -> list[str]:
    """One line per mapped table whose capture trigger is missing or stale."""
    with engine.connect() as conn:
        wanted = trigger_specs(mappings, conn.dialect.name)
        have = existing_triggers(conn)
    problems: list[str] = []
    for table in dict.fromkeys(s.table for s in wanted):
        names = {s.name for s in wanted if s.table == table}
        present = {n for n, t in have.items() if t == table}
        if names == present:
            continue
        if present - names:
            problems.append(f"{table}: outbox trigger is stale (the mapping changed)")
        else:
            problems.append(f"{table}: outbox trigger is missing")
    return problems
