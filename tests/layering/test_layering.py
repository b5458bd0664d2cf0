"""The import rules between layers (DESIGN.md "Layers") hold, and the checker bites."""

from __future__ import annotations

from pathlib import Path

from tests.layering.rules import check_tree, import_cycles

REPO = Path(__file__).resolve().parents[2]
BAD = Path(__file__).resolve().parent / "fixtures" / "bad_connector"


def test_the_real_tree_has_no_layering_violation() -> None:
    """core stays pure, adapters do not reach up, the emulator imports nothing from connector."""
    violations = check_tree(REPO)
    assert violations == [], "\n".join(map(str, violations))


def test_checker_flags_every_break_in_the_bad_fixture() -> None:
    """On a deliberately bad tree the checker names each offending file and import."""
    found = {(v.file.split("connector/", 1)[1], v.imported.split(".")[0]) for v in check_tree(BAD)}
    assert found == {
        ("core/uses_httpx.py", "httpx"),
        ("core/uses_sqlalchemy.py", "sqlalchemy"),
        ("core/uses_websockets.py", "websockets"),
        ("core/relative_up.py", "connector"),
        ("emulator/uses_connector.py", "connector"),
        ("emulator/relative_connector.py", "connector"),
        ("adapters/reaches_up.py", "connector"),
    }


def test_checker_allows_the_emulator_to_import_itself() -> None:
    """An emulator module importing another emulator module is not a violation."""
    assert not [v for v in check_tree(BAD) if v.file.endswith("fine.py")]


def test_the_real_tree_has_no_import_cycle() -> None:
    """No two modules of ``connector/`` import each other, even through others or only
    for types (``TYPE_CHECKING``) or inside a function: each layer reads one way."""
    cycles = import_cycles(REPO)
    assert cycles == [], "\n".join(" ↔ ".join(group) for group in cycles)


def test_the_cycle_finder_names_a_circle_of_three_and_a_type_only_pair(tmp_path: Path) -> None:
    """Built on purpose: a → b → c → a at the top of the files, and d ↔ e where e's
    import sits under ``TYPE_CHECKING``: both are found; a package's ``__init__`` that
    imports its own submodule is not a circle."""
    pkg = tmp_path / "connector"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from connector import a\n")
    (pkg / "a.py").write_text("from connector import b\n")
    (pkg / "b.py").write_text("import connector.c\n")
    (pkg / "c.py").write_text("from connector.a import thing\n")
    (pkg / "d.py").write_text("from connector.e import E\n")
    (pkg / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from connector.d import D\n"
    )
    (pkg / "f.py").write_text("def late():\n    from connector import a\n")
    assert import_cycles(tmp_path) == [
        ["connector.a", "connector.b", "connector.c"],
        ["connector.d", "connector.e"],
    ]
