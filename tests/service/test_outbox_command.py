"""ERP → portal through the CLI: sync --once pushes, outbox list/retry, status reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import cli, served, setup_connector

__all__ = ["served"]  # the fixture, shared with the queue-side CLI tests


def _erp(db_url: str, *statements: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


@pytest.mark.backends("sqlite", "postgresql")  # the CLI end to end; SQL per server elsewhere
def test_sync_once_pushes_erp_rows_and_reports_refusals(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    """Two ERP inserts, one with a bad e-mail: sync --once adds the good one and exits 0;
    status and outbox list --failed name the refusal; after the ERP fixes the value,
    outbox retry --all and another sync push it."""
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    _erp(
        db_url,
        "INSERT INTO erp_company (title) VALUES ('Good Co')",
        "INSERT INTO erp_company (title) VALUES ('Bad Co')",
        "INSERT INTO erp_company_email (owner_id, value) "
        "SELECT id, 'nope' FROM erp_company WHERE title = 'Bad Co'",
    )
    synced = cli("sync", "--once", "--json", cwd=tmp_path, env=env)
    assert synced.returncode == 0, synced.stderr
    pushed = json.loads(synced.stdout)["push"]
    assert (pushed["added"], pushed["failed"]) == (1, 1)
    titles = [
        emulator.portal().crm.get("company", i)["TITLE"]
        for i in emulator.portal().crm.ids("company")
    ]
    assert titles == ["Good Co"]

    status = json.loads(cli("status", "--json", "--local", cwd=tmp_path, env=env).stdout)
    assert (status["outbox_pending"], status["outbox_failed"]) == (0, 1)
    assert status["capture_problems"] == []
    failed = json.loads(cli("outbox", "list", "--failed", "--json", cwd=tmp_path, env=env).stdout)
    assert [r["status"] for r in failed] == ["failed"]  # one line per refused record
    assert all("invalid e-mail" in r["last_error"] for r in failed)

    text = cli("outbox", "list", "--failed", cwd=tmp_path, env=env)
    assert "invalid e-mail" in text.stdout

    wrong = cli("outbox", "retry", "999", cwd=tmp_path, env=env)
    assert wrong.returncode == 2 and "no outbox row 999" in wrong.stderr
    _erp(db_url, "UPDATE erp_company_email SET value = 'ok@bad.test'")
    retried = cli("outbox", "retry", "--all", cwd=tmp_path, env=env)
    assert retried.returncode == 0 and retried.stdout.startswith("1 outbox row pending again")
    again = cli("sync", "--once", "--json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["push"]["added"] == 1
    assert json.loads(cli("outbox", "list", "--json", cwd=tmp_path, env=env).stdout) == []
    assert emulator.queue_state() == []  # our adds queued nothing for our connector
