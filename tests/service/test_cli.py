"""The CLI contract: verbs exist, exit codes 0/1/2, one-line errors naming what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

VERBS = [
    ["db", "upgrade"],
    ["auth", "set"],
    ["auth", "status"],
    ["run"],
    ["sync"],
    ["backfill"],
    ["conflicts", "list"],
    ["conflicts", "show"],
    ["conflicts", "resolve"],
    ["errors", "list"],
    ["errors", "retry"],
    ["outbox", "list"],
    ["outbox", "retry"],
    ["queue", "list"],
    ["status"],
    ["emulator"],
    ["demo"],
]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m connector`` in a clean environment (no B24_* from the shell)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_verb_of_the_design(tmp_path: Path) -> None:
    """--help exits 0 and every documented verb answers its own --help."""
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for verb in [
        "auth",
        "backfill",
        "conflicts",
        "db",
        "demo",
        "emulator",
        "errors",
        "outbox",
        "queue",
        "run",
        "status",
        "sync",
    ]:
        assert verb in top.stdout
    from click.testing import CliRunner

    from connector.service.cli import cli

    for path in VERBS:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_the_operator_verbs_work_on_an_empty_database(tmp_path: Path) -> None:
    """conflicts, errors and outbox answer on a fresh database — none is a placeholder."""
    assert run_cli("db", "upgrade", cwd=tmp_path).returncode == 0
    for verb, expected in [
        (("conflicts", "list"), "no open conflicts"),
        (("errors", "list"), "no open record errors"),
        (("outbox", "list"), "the outbox is empty"),
    ]:
        result = run_cli(*verb, cwd=tmp_path)
        assert result.returncode == 0, (verb, result.stderr)
        assert result.stdout.strip() == expected
    missing = run_cli("conflicts", "show", "7", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no conflict 7" in missing.stderr


def test_db_upgrade_creates_a_new_sqlite_file(tmp_path: Path) -> None:
    """db upgrade on the default URL creates connector.db at head; a second run is a no-op."""
    first = run_cli("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout
    assert (tmp_path / "connector.db").exists()
    second = run_cli("db", "upgrade", cwd=tmp_path)
    assert second.returncode == 0
    assert "already at revision" in second.stdout


def test_db_upgrade_on_each_database(db_url: str, tmp_path: Path) -> None:
    """db upgrade through B24_DATABASE_URL creates the sync_ tables on every database."""
    result = run_cli("db", "upgrade", cwd=tmp_path, env={"B24_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(db_url)
    try:
        assert "sync_journal" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("var", "value"),
    [("B24_DATABASE_URL", "nonsense"), ("B24_PORTAL_URL", "acme.bitrix24.com")],
)
def test_bad_setting_exits_2_with_one_line(tmp_path: Path, var: str, value: str) -> None:
    """A bad URL setting exits 2 with a single stderr line that names the variable."""
    result = run_cli("db", "upgrade", cwd=tmp_path, env={var: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0], result.stderr


def test_unreachable_database_exits_1_without_traceback(tmp_path: Path) -> None:
    """A database that cannot be reached is a failure (1) with a message, not a traceback."""
    result = run_cli(
        "db",
        "upgrade",
        cwd=tmp_path,
        env={"B24_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "B24_DATABASE_URL" in result.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    """An unknown verb or a missing required option is a usage error (2)."""
    assert run_cli("frobnicate", cwd=tmp_path).returncode == 2
    assert run_cli("sync", cwd=tmp_path).returncode == 2


def test_broken_mapping_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    """db upgrade with a broken mapping file exits 2, one line with file:line: key."""
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "company.yaml").write_text(
        "entity: crm.company\ntable: erp_company\nfields:\n"
        "  - {portal: TITLE, column: title, type: strng}\n",
        encoding="utf-8",
    )
    result = run_cli("db", "upgrade", cwd=tmp_path, env={"B24_MAPPINGS_DIR": str(folder)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {folder / 'company.yaml'}:4: fields[0].type: 'strng' is not one of string, "
        "text, integer, decimal, boolean, date, datetime, enum"
    ]


def test_mapping_change_then_db_upgrade_adds_the_column(tmp_path: Path) -> None:
    """The documented flow: edit a mapping, run db upgrade, the new column appears."""
    folder = tmp_path / "maps"
    folder.mkdir()
    mapping = folder / "company.yaml"
    mapping.write_text(
        "entity: crm.company\ntable: erp_company\nfields:\n"
        "  - {portal: TITLE, column: title, type: string}\n",
        encoding="utf-8",
    )
    env = {"B24_MAPPINGS_DIR": str(folder)}
    assert run_cli("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    mapping.write_text(
        mapping.read_text(encoding="utf-8")
        + "  - {portal: COMMENTS, column: comments, type: text}\n",
        encoding="utf-8",
    )
    result = run_cli("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "added column erp_company.comments" in result.stdout
