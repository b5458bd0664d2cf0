"""The operator's conflict workflow, end to end: the CLI in a subprocess, a served emulator.

A title changed on both sides → one conflict, only that record held → ``conflicts show``
→ ``conflicts resolve`` in each form → both sides agree (or, ignored, keep what they
hold), nothing stays held in the portal's queue, and the next portal edit reaches the ERP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import cli, served, setup_connector

__all__ = ["served"]

# The workflow is the CLI's; the SQL under it (the resolver, the holds, the merge) is tested
# per server elsewhere (test_holds, the model in tests/reliability), so one backend here.
pytestmark = pytest.mark.backends("sqlite")


class Story:
    def __init__(self, emulator: Emulator, db_url: str, env: dict[str, str], cwd: Path) -> None:
        self.emulator, self.db_url, self.env, self.cwd = emulator, db_url, env, cwd

    def cli(self, *args: str) -> Any:
        return cli(*args, cwd=self.cwd, env=self.env)

    def sync(self) -> dict[str, Any]:
        done = self.cli("sync", "--once", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def erp(self, statement: str, **params: Any) -> None:
        engine = sa.create_engine(self.db_url)
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
        engine.dispose()

    def erp_row(self, b24_id: int) -> dict[str, Any]:
        engine = sa.create_engine(self.db_url)
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT title, comments FROM erp_company WHERE b24_id = :b"), {"b": b24_id}
            ).one()
        engine.dispose()
        return {"title": row[0], "comments": row[1]}

    def portal(self, b24_id: int) -> dict[str, Any]:
        return self.emulator.portal().crm.get("company", b24_id)

    def held(self) -> list[dict[str, Any]]:
        return [r for r in self.emulator.queue_state() if r["ERROR"] == "1"]


@pytest.fixture
def story(served: tuple[Emulator, ServerThread], db_url: str, tmp_path: Path) -> Story:
    emulator, server = served
    emulator.set_limits(enabled=False)  # the workflow is under test here, not the limiter
    env = setup_connector(emulator, server, db_url, tmp_path)
    return Story(emulator, db_url, env, tmp_path)


def _conflict(story: Story) -> tuple[int, int, int]:
    """Two synced companies; the first's TITLE changed on both sides, then one sync."""
    story.sync()  # binds the offline events
    cid = story.emulator.ui_add("crm.company", {"TITLE": "Acme", "COMMENTS": "c0"})
    other = story.emulator.ui_add("crm.company", {"TITLE": "Other"})
    story.sync()
    story.erp("UPDATE erp_company SET title = 'ERP title' WHERE b24_id = :b", b=cid)
    story.emulator.ui_update("crm.company", cid, {"TITLE": "Portal title"})
    story.emulator.ui_update("crm.company", other, {"TITLE": "Other renamed"})
    stats = story.sync()
    assert stats["conflicts"] == 1
    assert story.erp_row(other)["title"] == "Other renamed"  # the rest flows
    [row] = json.loads(story.cli("conflicts", "list", "--json").stdout)
    assert (row["entity"], row["b24_id"], sorted(row["fields"])) == ("crm.company", cid, ["TITLE"])
    assert len(story.held()) == 1
    # a later portal edit of the held record waits in the held queue record
    story.emulator.ui_update("crm.company", cid, {"COMMENTS": "edited while held"})
    assert story.sync()["records"] == 0
    return int(row["id"]), cid, other


@pytest.mark.parametrize(
    ("args", "title_erp", "title_portal"),
    [
        (["--keep", "portal"], "Portal title", "Portal title"),
        (["--keep", "erp", "--field", "TITLE"], "ERP title", "ERP title"),
        (["--value", "TITLE=Agreed"], "Agreed", "Agreed"),
        (["--ignore"], "ERP title", "Portal title"),
    ],
)
def test_each_resolution_writes_both_sides_and_releases_the_record(
    story: Story, args: list[str], title_erp: str, title_portal: str
) -> None:
    """resolve writes the outcome to both sides, leaves no ERROR record in the portal's
    queue, brings the edit made while held, and the next portal edit reaches the ERP."""
    conflict_id, cid, _ = _conflict(story)
    shown = story.cli("conflicts", "show", str(conflict_id))
    assert shown.returncode == 0
    assert "ERP title *" in shown.stdout and "Portal title *" in shown.stdout

    done = story.cli("conflicts", "resolve", str(conflict_id), *args, "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert (story.erp_row(cid)["title"], story.portal(cid)["TITLE"]) == (title_erp, title_portal)
    assert story.held() == []
    assert story.erp_row(cid)["comments"] == "edited while held"
    assert json.loads(story.cli("conflicts", "list", "--json").stdout) == []
    [closed] = json.loads(story.cli("conflicts", "list", "--all", "--json").stdout)
    assert closed["resolved_by"] == "alice"
    assert closed["status"] == ("ignored" if "--ignore" in args else "resolved")

    story.emulator.ui_update("crm.company", cid, {"COMMENTS": "after"})
    story.sync()
    assert story.erp_row(cid) == {"title": title_erp, "comments": "after"}
    assert story.portal(cid)["TITLE"] == title_portal  # nothing pushed over the other side
    assert story.emulator.queue_state() == []

    again = story.cli("conflicts", "resolve", str(conflict_id), "--keep", "erp")
    assert again.returncode == 0 and "already" in again.stdout


def test_resolve_names_a_bad_id_or_field_and_exits_2(story: Story) -> None:
    """A conflict that does not exist, a field it does not hold, two modes at once: exit 2
    with a line naming what is wrong, and the conflict stays open."""
    conflict_id, _, _ = _conflict(story)
    for args, text in [
        (["999", "--keep", "erp"], "no conflict 999"),
        ([str(conflict_id), "--keep", "erp", "--field", "COMMENTS"], "has no field COMMENTS"),
        ([str(conflict_id), "--keep", "erp", "--ignore"], "exactly one of"),
        ([str(conflict_id), "--value", "TITLE"], "FIELD=VALUE"),
    ]:
        result = story.cli("conflicts", "resolve", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert text in result.stderr
    assert len(json.loads(story.cli("conflicts", "list", "--json").stdout)) == 1


def test_errors_list_and_retry_through_the_cli(story: Story) -> None:
    """A refused title is listed by errors list; once fixed in the portal, errors retry
    --all syncs it, closes the error and leaves nothing held."""
    story.sync()
    cid = story.emulator.ui_add("crm.company", {"TITLE": "x" * 300})
    assert story.sync()["bad"] == 1
    [error] = json.loads(story.cli("errors", "list", "--json").stdout)
    assert (error["entity"], error["b24_id"], error["field"]) == ("crm.company", cid, "TITLE")
    assert "300 characters" in error["message"] or "fit" in error["message"]
    story.emulator.ui_update("crm.company", cid, {"TITLE": "Fixed"})
    missing = story.cli("errors", "retry", "999")
    assert missing.returncode == 2 and "no record error 999" in missing.stderr
    retried = story.cli("errors", "retry", "--all")
    assert retried.returncode == 0, retried.stderr
    assert "1 synced now" in retried.stdout
    assert story.erp_row(cid)["title"] == "Fixed"
    assert json.loads(story.cli("errors", "list", "--json").stdout) == []
    story.sync()
    assert story.held() == []
