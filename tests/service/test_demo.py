"""The README's first command: the demo runs end to end on embedded defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_syncs_backfills_drains_and_holds_a_conflict(tmp_path: Path) -> None:
    """`b24-connector demo --json` exits 0 having loaded the seeded CRM, drained three
    portal edits, pushed an ERP edit, resolved a conflict through the CLI, left nothing
    held, and marked every REST call with auth_connector."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    result = subprocess.run(
        [sys.executable, "-m", "connector", "demo", "--json", "--dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backfill"] == {
        "erp_company": 20,
        "erp_contact": 30,
        "erp_deal": 15,
        "erp_lead": 10,
    }
    drain = report["drain"]
    assert (drain["inserted"], drain["updated"], drain["deleted"]) == (1, 1, 1)
    assert report["conflicts"] == 1
    assert report["push"]["updated"] == 1  # the ERP's edit reached the portal
    assert report["resolved"] == "resolved"  # through the CLI, in its own process
    assert report["rest_calls"] == report["with_auth_connector"] > 0
    assert (report["queue_waiting"], report["queue_held"]) == (0, 0)
    assert Path(report["database"]).exists()
