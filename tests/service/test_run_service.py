"""`b24-connector run` as ops run it: health and metrics on a real port, JSON logs, a clean
stop — against a served emulator, the worker in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from connector.adapters.store.database import make_engine
from connector.adapters.store.tokens import TokenStore
from connector.core.oauth_tokens import parse_token_answer
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.drain_harness import CONNECTOR
from tests.service.test_worker import eventually, served

__all__ = ["served"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _synced(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "b24_records_synced_total":
                key = sample.labels["direction"]
                out[key] = out.get(key, 0.0) + sample.value
    return out


def test_run_serves_health_and_metrics_and_stops_clean(
    served: tuple[Emulator, ServerThread], tmp_path: Path
) -> None:
    """/healthz answers 200, /readyz turns 200 once running, /metrics parses and its sync
    counters move for a portal change and an ERP change; the log is JSON lines; SIGTERM
    exits 0 and leaves no queue record locked."""
    emulator, server = served
    emulator.set_limits(enabled=False)
    creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
    db_url = f"sqlite:///{tmp_path}/c.db"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env.update(
        {
            "B24_PORTAL_URL": server.base_url,
            "B24_OAUTH_URL": server.base_url,
            "B24_CLIENT_ID": creds["client_id"],
            "B24_CLIENT_SECRET": creds["client_secret"],
            "B24_CONNECTOR_ID": CONNECTOR,
            "B24_DATABASE_URL": db_url,
            "B24_METRICS_PORT": str(port),
            "B24_LOG_FORMAT": "json",
        }
    )
    cli = [sys.executable, "-m", "connector"]
    upgraded = subprocess.run([*cli, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True)
    assert upgraded.returncode == 0
    engine = make_engine(db_url)
    host = server.base_url.split("://", 1)[1]
    TokenStore(engine, host).save(parse_token_answer(host, creds, datetime.now(UTC)))
    proc = subprocess.Popen(
        [*cli, "run", "--poll-interval", "0.5", "--push-interval", "0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers(path: str, status: int) -> bool:
        try:
            return httpx.get(f"{base}{path}", timeout=2).status_code == status
        except httpx.HTTPError:
            return False

    try:
        asyncio.run(eventually(lambda: answers("/healthz", 200), limit=30))
        asyncio.run(eventually(lambda: answers("/readyz", 200), limit=30))
        emulator.ui_add("crm.company", {"TITLE": "From the portal"})
        try:  # bounds for a hung worker (60 s on a loaded CI machine), not timings
            asyncio.run(eventually(lambda: _synced(base).get("to_erp", 0) >= 1, limit=60))
            with engine.begin() as conn:  # the ERP's own write
                conn.execute(sa.text("INSERT INTO erp_company (title) VALUES ('From the ERP')"))
            asyncio.run(eventually(lambda: _synced(base).get("to_portal", 0) >= 1, limit=60))
        except TimeoutError:
            proc.kill()
            _out, err = proc.communicate(timeout=30)
            raise AssertionError(
                f"the worker synced nothing; its log ends:\n{err[-4000:]}"
            ) from None
        text = httpx.get(f"{base}/metrics", timeout=5).text
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)  # closes the pipes
    assert proc.returncode == 0, err
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "b24_rest_requests",
        "b24_outbox_rows",
        "b24_conflicts_open",
        "b24_push_lag_seconds",
        "b24_drain_batch_seconds",
        "b24_rate_limit_waits",
        "b24_token_refreshes",
        "b24_push_connects",
        "b24_drain_lag_seconds",
        "b24_queue_depth",
    } <= names, names
    assert 'b24_rest_requests_total{method="batch",outcome="ok"}' in text
    assert 'b24_entity_records_synced_total{direction="to_erp",entity="crm.company"}' in text
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line["message"] == "drain.batch" and line["records"] >= 1 for line in lines)
    assert any(line["message"] == "push.round" and line["added"] == 1 for line in lines)
    assert all(r["PROCESS_ID"] == "" for r in emulator.queue_state())
    titles = sorted(
        emulator.portal().crm.get("company", i)["TITLE"]
        for i in emulator.portal().crm.ids("company")
    )
    assert titles == ["From the ERP", "From the portal"]
    engine.dispose()


def test_status_with_the_portal_down_answers_quickly_and_says_why(tmp_path: Path) -> None:
    """Nothing listens at the portal's address: status still prints the local part and
    one line "portal unreachable: …", in seconds rather than a retry ladder's half minute."""
    import time

    dead = f"http://127.0.0.1:{_free_port()}"
    db_url = f"sqlite:///{tmp_path}/c.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env.update(
        {
            "B24_PORTAL_URL": dead,
            "B24_OAUTH_URL": dead,
            "B24_CLIENT_ID": "local.x",
            "B24_CLIENT_SECRET": "secret",
            "B24_DATABASE_URL": db_url,
        }
    )
    cli = [sys.executable, "-m", "connector"]
    assert subprocess.run([*cli, "db", "upgrade"], env=env, cwd=tmp_path).returncode == 0
    engine = make_engine(db_url)
    host = dead.split("://", 1)[1]
    answer = {"access_token": "a", "refresh_token": "r", "expires_in": 3600}
    TokenStore(engine, host).save(parse_token_answer(host, answer, datetime.now(UTC)))
    engine.dispose()
    started = time.monotonic()
    done = subprocess.run([*cli, "status"], env=env, cwd=tmp_path, capture_output=True, text=True)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "portal         unreachable:" in done.stdout
    assert "outbox         0 pending" in done.stdout
    assert took < 10, took  # generous: the process start is most of it; measured ≈ 1.5 s


async def test_a_metrics_port_in_use_is_a_one_line_configuration_error() -> None:
    """Another process holds B24_METRICS_PORT: exit-2 material naming it, not uvicorn's
    traceback."""
    import pytest

    from connector.errors import ConfigError
    from connector.service.health import HealthServer, Metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = int(taken.getsockname()[1])
        server = HealthServer(Metrics(), lambda: "running", "127.0.0.1", port)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start()
