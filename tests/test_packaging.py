"""The wheel ships every package, including the top-level migrations/ as connector.migrations."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared() -> set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "connector").rglob("__init__.py")
    }
    found |= {
        "connector." + ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "migrations").rglob("__init__.py")
    }
    if (REPO / "mappings" / "__init__.py").exists():
        found.add("connector.default_mappings")
    return found


def test_every_package_folder_is_declared() -> None:
    """pyproject's explicit package list matches the package folders on disk."""
    assert _declared() == _on_disk()


def test_shipped_mappings_are_importable_as_connector_default_mappings() -> None:
    """Installed, the default mappings ship as package data beside the code."""
    from connector.service.wiring import shipped_mappings_dir

    assert {p.name for p in shipped_mappings_dir().glob("*.yaml")} == {
        "company.yaml",
        "contact.yaml",
        "deal.yaml",
        "lead.yaml",
    }


def test_migrations_are_importable_as_connector_migrations() -> None:
    """Installed, the Alembic scripts live in connector.migrations (db upgrade uses it)."""
    from connector.adapters.store.migrate import head_revision, script_location

    assert (script_location() / "env.py").exists()
    assert head_revision() is not None
