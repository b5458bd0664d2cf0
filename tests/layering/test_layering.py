"""The import rules between layers (DESIGN.md "Layers") hold, and the checker bites."""

from __future__ import annotations

from pathlib import Path

from tests.layering.rules import check_tree

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
