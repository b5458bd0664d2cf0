"""The operator's path end to end: a real emulator on a loopback port, the CLI in a subprocess.

``db upgrade`` → tokens stored → UI changes in the portal → ``sync --once`` → the ERP
tables hold them; ``queue list`` and ``status`` report on the same state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread


@pytest.fixture
def served() -> Iterator[tuple[Emulator, ServerThread]]:
    emulator = Emulator()
    with ServerThread(emulator) as server:
        yield emulator, server


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def setup_connector(
    emulator: Emulator, server: ServerThread, db_url: str, tmp_path: Path
) -> dict[str, str]:
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    env = {
        "B24_PORTAL_URL": server.base_url,
        "B24_OAUTH_URL": server.base_url,
        "B24_CLIENT_ID": creds["client_id"],
        "B24_CLIENT_SECRET": creds["client_secret"],
        "B24_CONNECTOR_ID": "erp_main",
        "B24_DATABASE_URL": db_url,
    }
    upgraded = cli("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    # the operator's step; without an access token the first call refreshes the pair
    stored = cli(
        "auth", "set", cwd=tmp_path, env={**env, "B24_REFRESH_TOKEN": creds["refresh_token"]}
    )
    assert stored.returncode == 0, stored.stderr
    assert creds["refresh_token"] not in stored.stdout + stored.stderr
    return env


def erp_rows(db_url: str) -> list[dict[str, Any]]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                sa.text("SELECT b24_id, title FROM erp_company ORDER BY b24_id")
            ).mappings()
        ]
    engine.dispose()
    return rows


@pytest.mark.backends("sqlite", "postgresql")  # the CLI end to end; SQL per server elsewhere
def test_sync_once_brings_portal_changes_into_the_erp(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    """sync --once binds, drains and exits 0; the ERP table then holds the portal's companies,
    the queue is empty and status shows the 12 bindings."""
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    first = cli("sync", "--once", "--json", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["records"] == 0  # bound now; nothing queued before

    ids = [emulator.ui_add("crm.company", {"TITLE": f"Firm {n}"}) for n in range(3)]
    emulator.ui_update("crm.company", ids[0], {"TITLE": "Firm zero"})
    second = cli("sync", "--once", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("synced: 4 queue records")  # 3 ADD + 1 UPDATE
    assert erp_rows(db_url) == [
        {"b24_id": ids[0], "title": "Firm zero"},
        {"b24_id": ids[1], "title": "Firm 1"},
        {"b24_id": ids[2], "title": "Firm 2"},
    ]

    queue = cli("queue", "list", "--json", cwd=tmp_path, env=env)
    assert queue.returncode == 0, queue.stderr
    assert json.loads(queue.stdout) == []
    status = cli("status", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert len(report["portal"]["bindings"]) == 12
    assert report["journal_unfinished"] == 0 and report["token"]["stored"] is True
    rest_calls = [e for e in emulator.requests() if e.kind == "rest"]
    assert rest_calls and all(e.auth_connector == "erp_main" for e in rest_calls)
    assert [e.kind for e in emulator.requests()].count("oauth") == 1  # one refresh, at first use


@pytest.mark.backends("sqlite", "postgresql")  # the CLI end to end; SQL per server elsewhere
def test_queue_list_shows_waiting_records(
    served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path
) -> None:
    """queue list prints what waits in our partition, as a table or as JSON."""
    emulator, server = served
    env = setup_connector(emulator, server, db_url, tmp_path)
    assert cli("sync", "--once", cwd=tmp_path, env=env).returncode == 0
    cid = emulator.ui_add("crm.contact", {"NAME": "Ann"})
    listed = json.loads(cli("queue", "list", "--json", cwd=tmp_path, env=env).stdout)
    assert [(r["EVENT_NAME"], r["EVENT_DATA"]["FIELDS"]["ID"]) for r in listed] == [
        ("ONCRMCONTACTADD", cid)
    ]
    table = cli("queue", "list", cwd=tmp_path, env=env)
    assert "ONCRMCONTACTADD" in table.stdout and "waiting" in table.stdout


def test_sync_without_tokens_says_how_to_fix(
    tmp_path: Path, served: tuple[Emulator, ServerThread]
) -> None:
    """No stored tokens: exit 2 with the auth set command to run."""
    _, server = served
    env = {
        "B24_PORTAL_URL": server.base_url,
        "B24_CLIENT_ID": "local.x",
        "B24_CLIENT_SECRET": "s",
        "B24_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
    }
    assert cli("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    result = cli("sync", "--once", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "b24-connector auth set" in result.stderr
