"""The layering rules of DESIGN.md as data, and a scanner that checks a source tree.

* ``connector/core`` is pure: no I/O libraries, no clocks, sleeping or logging, nothing
  from adapters, service, emulator.
* ``connector/adapters`` does not reach up into ``service`` nor into the ``emulator``.
* ``connector/emulator`` imports nothing from ``connector`` outside itself.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

IO_LIBRARIES = (
    "httpx",
    "sqlalchemy",
    "alembic",
    "websockets",
    "starlette",
    "uvicorn",
    "psycopg",
    "pymysql",
    "requests",
    "socket",
    "ssl",
    "click",
    "rich",
    "trustme",
)

CORE_IMPURE = ("asyncio", "time", "logging", "threading", "subprocess", "os", "shutil")
"""Waiting, clocks, logging and the process: the core gets them through ports (``Clock``)
or leaves them to the edges."""

RULES: dict[str, tuple[str, ...]] = {
    "connector.core": (
        *IO_LIBRARIES,
        *CORE_IMPURE,
        "connector.adapters",
        "connector.service",
        "connector.emulator",
        "connector.settings",
    ),
    "connector.adapters": ("connector.service", "connector.emulator"),
}


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    module: str
    imported: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.module} must not import {self.imported}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.append((node.lineno, target))
            names += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return names


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def check_tree(root: Path) -> list[Violation]:
    """Scan every ``connector/**.py`` under ``root`` and return the rule breaks."""
    found: list[Violation] = []
    for path in sorted((root / "connector").rglob("*.py")):
        module = module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imported_names(tree, module, path.name == "__init__.py")
        if _matches(module, "connector.emulator"):
            forbidden = [
                (line, name)
                for line, name in imports
                if _matches(name, "connector") and not _matches(name, "connector.emulator")
            ]
        else:
            prefixes = next((v for k, v in RULES.items() if _matches(module, k)), ())
            forbidden = [
                (line, name) for line, name in imports if any(_matches(name, p) for p in prefixes)
            ]
        seen: set[int] = set()
        for line, name in forbidden:
            if line not in seen:
                seen.add(line)
                found.append(Violation(str(path.relative_to(root)), line, module, name))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the ``connector`` modules it imports (anywhere in the file: at the top,
    inside functions, under ``TYPE_CHECKING``), for the modules under ``root``."""
    paths = sorted((root / "connector").rglob("*.py"))
    modules = {module_name(root, p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for _line, name in imported_names(tree, module, path.name == "__init__.py"):
            # ``from a.b import c``: c may be a module (a.b.c) or a name in a.b
            hit = name if name in modules else name.rpartition(".")[0]
            if hit in modules and hit != module:
                targets.add(hit)
        graph[module] = targets
    return graph


def import_cycles(root: Path) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted: each is
    an import circle, type-only imports included. A package's ``__init__`` importing its
    own submodules is not counted (that is how a package re-exports)."""
    graph = import_graph(root)
    for module, targets in graph.items():
        if (root / Path(*module.split("."))).is_dir():  # a package's __init__
            graph[module] = {t for t in targets if not t.startswith(module + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)
