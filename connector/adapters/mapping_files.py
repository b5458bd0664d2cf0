"""Load ``mappings/*.yaml`` into :class:`~connector.core.mapping_model.MappingSet`.

A broken file raises :class:`~connector.errors.MappingError` naming the file, the key and
the line (``mappings/company.yaml:12: fields[1].type: 'strng' is not one of …``), so the
CLI can exit 2 with one line the operator can act on.

File shape::

    entity: crm.company          # crm.company | crm.contact | crm.lead | crm.deal
    table: erp_company           # the ERP table
    key: id                      # its primary key column (default id)
    delete_policy: mark          # mark | delete | ignore (default mark)
    deleted_column: b24_deleted_at
    fields:
      - {portal: TITLE, column: title, type: string, length: 255}
      - {portal: COMMENTS, column: comments, type: text, direction: both, conflict: manual}
    multifields:
      - {portal: PHONE, table: erp_company_phone}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from connector.core.mapping_model import (
    ENTITY_EVENTS,
    MULTIFIELD_CODES,
    ConflictPolicy,
    DeletePolicy,
    Direction,
    EntityMapping,
    FieldMapping,
    FieldType,
    MappingSet,
    MultiFieldMapping,
)
from connector.errors import MappingError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PORTAL_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ENTITIES_WITH_MULTIFIELDS = {"crm.company", "crm.contact", "crm.lead"}

_TOP_KEYS = {"entity", "table", "key", "delete_policy", "deleted_column", "fields", "multifields"}
_FIELD_KEYS = {
    "portal",
    "column",
    "type",
    "direction",
    "conflict",
    "length",
    "precision",
    "scale",
    "values",
    "nullable",
}
_MULTI_KEYS = {"portal", "table", "direction", "conflict"}

E = TypeVar("E", bound=StrEnum)


class _Node:
    """A YAML node with its line, for messages."""

    def __init__(self, node: yaml.Node, path: str) -> None:
        self.node = node
        self.path = path
        self.line = node.start_mark.line + 1


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}  # key path → line of its value

    def error(self, message: str, key: str | None, line: int | None) -> MappingError:
        return MappingError(message, file=self.file, key=key, line=line)

    def mapping(self, n: _Node, allowed: set[str], required: set[str]) -> dict[str, _Node]:
        if not isinstance(n.node, yaml.MappingNode):
            raise self.error("expected a mapping of keys to values", n.path or None, n.line)
        out: dict[str, _Node] = {}
        for key_node, value_node in n.node.value:
            key = str(key_node.value)
            path = f"{n.path}.{key}" if n.path else key
            if key not in allowed:
                raise self.error(
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                    path,
                    key_node.start_mark.line + 1,
                )
            if key in out:
                raise self.error("key given twice", path, key_node.start_mark.line + 1)
            out[key] = _Node(value_node, path)
            self.lines[path] = value_node.start_mark.line + 1
        missing = sorted(required - out.keys())
        if missing:
            where = f"{n.path}.{missing[0]}" if n.path else missing[0]
            raise self.error("required key is missing", where, n.line)
        return out

    def scalar(self, n: _Node) -> Any:
        if not isinstance(n.node, yaml.ScalarNode):
            raise self.error("expected a single value", n.path, n.line)
        return yaml.safe_load(yaml.serialize(n.node))

    def text(self, n: _Node, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.scalar(n)
        if not isinstance(value, str) or not value:
            raise self.error("expected a non-empty string", n.path, n.line)
        if pattern is not None and not pattern.match(value):
            raise self.error(f"{value!r} is not {what}", n.path, n.line)
        return value

    def integer(self, n: _Node, low: int, high: int) -> int:
        value = self.scalar(n)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(f"expected a whole number from {low} to {high}", n.path, n.line)
        return value

    def boolean(self, n: _Node) -> bool:
        value = self.scalar(n)
        if not isinstance(value, bool):
            raise self.error("expected true or false", n.path, n.line)
        return value

    def choice(self, n: _Node, enum: type[E]) -> E:
        value = self.scalar(n)
        try:
            return enum(str(value))
        except ValueError:
            options = ", ".join(e.value for e in enum)
            raise self.error(f"{value!r} is not one of {options}", n.path, n.line) from None

    def items(self, n: _Node) -> list[_Node]:
        if not isinstance(n.node, yaml.SequenceNode):
            raise self.error("expected a list", n.path, n.line)
        return [_Node(item, f"{n.path}[{i}]") for i, item in enumerate(n.node.value)]


def _ident(r: _Reader, n: _Node) -> str:
    return r.text(n, _IDENT, "a lower-case SQL name (letters, digits, _; at most 63)")


def _field(r: _Reader, n: _Node) -> FieldMapping:
    d = r.mapping(n, _FIELD_KEYS, {"portal", "column", "type"})
    ftype = r.choice(d["type"], FieldType)
    opt: dict[str, Any] = {}
    if "direction" in d:
        opt["direction"] = r.choice(d["direction"], Direction)
    if "conflict" in d:
        opt["conflict"] = r.choice(d["conflict"], ConflictPolicy)
    if "nullable" in d:
        opt["nullable"] = r.boolean(d["nullable"])
    only: dict[str, FieldType] = {"length": FieldType.STRING, "values": FieldType.ENUM}
    for key, owner in only.items():
        if key in d and ftype is not owner:
            raise r.error(f"only a {owner.value} field takes {key}", d[key].path, d[key].line)
    for key in ("precision", "scale"):
        if key in d and ftype is not FieldType.DECIMAL:
            raise r.error(f"only a decimal field takes {key}", d[key].path, d[key].line)
    if ftype is FieldType.STRING:
        opt["length"] = r.integer(d["length"], 1, 65535) if "length" in d else 255
    if "precision" in d:
        opt["precision"] = r.integer(d["precision"], 1, 38)
    if "scale" in d:
        opt["scale"] = r.integer(d["scale"], 0, 18)
    if ftype is FieldType.ENUM:
        if "values" not in d:
            raise r.error(
                "an enum field needs values: {portal value: ERP value}", f"{n.path}.values", n.line
            )
        vn = d["values"]
        if not isinstance(vn.node, yaml.MappingNode) or not vn.node.value:
            raise r.error(
                "expected a non-empty mapping of portal value to ERP value", vn.path, vn.line
            )
        pairs = []
        for k, v in vn.node.value:
            pairs.append((str(k.value), str(v.value)))
        erp_side = [erp for _, erp in pairs]
        if len(set(erp_side)) != len(erp_side):
            raise r.error("two portal values map to the same ERP value", vn.path, vn.line)
        opt["values"] = tuple(pairs)
    return FieldMapping(
        portal=r.text(d["portal"], _PORTAL_CODE, "a portal field code like TITLE or UF_CRM_1"),
        column=_ident(r, d["column"]),
        type=ftype,
        **opt,
    )


def _multifield(r: _Reader, n: _Node, entity: str) -> MultiFieldMapping:
    d = r.mapping(n, _MULTI_KEYS, {"portal", "table"})
    code = r.text(d["portal"])
    if code not in MULTIFIELD_CODES:
        raise r.error(
            f"{code!r} is not a multi-field ({', '.join(MULTIFIELD_CODES)})",
            d["portal"].path,
            d["portal"].line,
        )
    if entity not in _ENTITIES_WITH_MULTIFIELDS:
        raise r.error(f"{entity} has no multi-fields", d["portal"].path, d["portal"].line)
    opt: dict[str, Any] = {}
    if "direction" in d:
        opt["direction"] = r.choice(d["direction"], Direction)
    if "conflict" in d:
        opt["conflict"] = r.choice(d["conflict"], ConflictPolicy)
    return MultiFieldMapping(portal=code, table=_ident(r, d["table"]), **opt)


def parse_mapping(text: str, file: str) -> EntityMapping:
    """Parse one mapping file's text; ``file`` is used in error messages."""
    r = _Reader(file)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise r.error(f"not valid YAML ({getattr(exc, 'problem', exc)})", None, line) from None
    if root is None:
        raise r.error("the file is empty", None, 1)
    d = r.mapping(_Node(root, ""), _TOP_KEYS, {"entity", "table", "fields"})
    entity = r.text(d["entity"])
    if entity not in ENTITY_EVENTS:
        raise r.error(
            f"{entity!r} is not one of {', '.join(ENTITY_EVENTS)}", "entity", d["entity"].line
        )
    table = _ident(r, d["table"])
    if table.startswith("sync_"):
        raise r.error(
            "ERP tables may not start with sync_ (reserved for the connector)",
            "table",
            d["table"].line,
        )
    opt: dict[str, Any] = {}
    if "key" in d:
        opt["key"] = _ident(r, d["key"])
    if "delete_policy" in d:
        opt["delete_policy"] = r.choice(d["delete_policy"], DeletePolicy)
    if "deleted_column" in d:
        opt["deleted_column"] = _ident(r, d["deleted_column"])
    field_nodes = r.items(d["fields"])
    fields = tuple(_field(r, fn) for fn in field_nodes)
    multi_nodes = r.items(d["multifields"]) if "multifields" in d else []
    multis = tuple(_multifield(r, mn, entity) for mn in multi_nodes)
    mapping = EntityMapping(
        entity=entity, table=table, source=file, fields=fields, multifields=multis, **opt
    )
    _check_unique(r, mapping, field_nodes, multi_nodes)
    return mapping


def _check_unique(
    r: _Reader, m: EntityMapping, field_nodes: list[_Node], multi_nodes: list[_Node]
) -> None:
    reserved = {m.key: "key", m.b24_id_column: "the b24_id column"}
    if m.delete_policy is DeletePolicy.MARK:
        reserved[m.deleted_column] = "deleted_column"
    columns: dict[str, str] = dict(reserved)
    codes: set[str] = set()
    for fm, fn in zip(m.fields, field_nodes, strict=True):
        if fm.column in columns:
            where = f"{fn.path}.column"
            raise r.error(
                f"duplicate column {fm.column!r} (also {columns[fm.column]})",
                where,
                r.lines.get(where, fn.line),
            )
        columns[fm.column] = f"field {fm.portal}"
        if fm.portal in codes or fm.portal in MULTIFIELD_CODES or fm.portal == "ID":
            where = f"{fn.path}.portal"
            raise r.error(
                f"portal field {fm.portal!r} mapped twice or reserved",
                where,
                r.lines.get(where, fn.line),
            )
        codes.add(fm.portal)
    tables = {m.table}
    for mf, mn in zip(m.multifields, multi_nodes, strict=True):
        if mf.table in tables or mf.portal in codes:
            raise r.error(
                f"duplicate table {mf.table!r} or multi-field {mf.portal!r}", mn.path, mn.line
            )
        tables.add(mf.table)
        codes.add(mf.portal)


def load_mappings(folder: Path, read: Callable[[Path], str] | None = None) -> MappingSet:
    """Load every ``*.yaml``/``*.yml`` in ``folder``; entities and tables must be unique."""
    if not folder.is_dir():
        raise MappingError("mappings folder not found (set B24_MAPPINGS_DIR)", file=str(folder))
    reader = read or (lambda p: p.read_text(encoding="utf-8"))
    entities: dict[str, EntityMapping] = {}
    owners: dict[str, str] = {}
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise MappingError("no *.yaml mapping files in this folder", file=str(folder))
    for path in files:
        mapping = parse_mapping(reader(path), str(path))
        if mapping.entity in entities:
            raise MappingError(
                f"entity also mapped in {entities[mapping.entity].source}",
                file=str(path),
                key="entity",
            )
        for table in (mapping.table, *(mf.table for mf in mapping.multifields)):
            if table in owners:
                raise MappingError(
                    f"table {table!r} also used in {owners[table]}", file=str(path), key="table"
                )
            owners[table] = str(path)
        entities[mapping.entity] = mapping
    return MappingSet(entities)
