"""Serving the emulator on a real loopback port, over HTTP and over HTTPS with the
throwaway trustme CA, and the connection help the ``emulator`` verb prints."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from connector.emulator import server as server_module
from connector.emulator.app import Emulator
from connector.emulator.server import (
    ServerThread,
    build_emulator,
    client_ssl_context,
    connection_help,
    make_tls_files,
    serve,
)


def test_plain_http_on_a_loopback_port() -> None:
    """A token pair from the control API works over a real socket; the token endpoint
    answers with client_endpoint on that port."""
    emulator = Emulator()
    creds = emulator.install_app()
    with ServerThread(emulator) as srv, httpx.Client(base_url=srv.base_url) as http:
        assert srv.base_url.startswith("http://127.0.0.1:")
        r = http.get("/rest/profile.json", params={"auth": creds["access_token"]})
        assert r.json()["result"]["ID"] == "1"
        r = http.post(
            "/oauth/token/",
            data={
                "grant_type": "refresh_token",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "refresh_token": creds["refresh_token"],
            },
        )
        assert r.json()["client_endpoint"] == f"{srv.base_url}/rest/"


def test_https_with_the_test_ca(tmp_path: Path) -> None:
    """Over TLS the server presents a certificate the trustme CA verifies; a client
    without the CA refuses the connection."""
    emulator = Emulator()
    creds = emulator.install_app()
    tls = make_tls_files(tmp_path)
    assert tls.ca_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with ServerThread(emulator, tls=True, tls_files=tls) as srv:
        assert srv.base_url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=srv.base_url, verify=client_ssl_context(tls)) as http:
            r = http.get("/rest/server.time", params={"auth": creds["access_token"]})
            assert r.status_code == 200
        with httpx.Client(base_url=srv.base_url) as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.get("/rest/server.time")


def test_connection_help_names_every_setting(tmp_path: Path) -> None:
    """The printed help sets the B24_* variables, the auth set line and, for TLS, the
    CA bundle variables."""
    app = {
        "client_id": "local.x.1",
        "client_secret": "s3cr3t",
        "refresh_token": "rt",
        "access_token": "at",
    }
    text = connection_help("https://127.0.0.1:8924", app, ca_file=tmp_path / "ca.pem")
    for needle in (
        "B24_PORTAL_URL=https://127.0.0.1:8924",
        "B24_OAUTH_URL=https://127.0.0.1:8924",
        "B24_CLIENT_ID=local.x.1",
        "B24_CLIENT_SECRET=s3cr3t",
        "B24_CONNECTOR_ID=",
        "b24-connector auth set --refresh-token rt",
        f"REQUESTS_CA_BUNDLE={tmp_path / 'ca.pem'}",
        f"SSL_CERT_FILE={tmp_path / 'ca.pem'}",
    ):
        assert needle in text
    plain = connection_help("http://127.0.0.1:1", app)
    assert "REQUESTS_CA_BUNDLE" not in plain


def test_build_emulator_applies_verb_options() -> None:
    """--plan, --rate-limit and --rate-burst reach the default portal."""
    emulator = build_emulator(seed=3, rate_limit=1.5, rate_burst=7, plan="enterprise")
    portal = emulator.default_portal
    assert (portal.plan.name, portal.limits.rate, portal.limits.burst) == ("enterprise", 1.5, 7)
    assert emulator.seed == 3
    assert build_emulator(rate_limit=0).default_portal.limits.enabled is False


def test_serve_prints_help_and_runs_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() builds the emulator from the verb's options, seeds data, installs the demo
    app, prints the help and hands the app to uvicorn (whose run is replaced so the test
    does not block)."""
    ran: list[object] = []
    built: list[Emulator] = []

    def capture(**kwargs: object) -> Emulator:
        emulator = build_emulator(**kwargs)  # type: ignore[arg-type]
        built.append(emulator)
        return emulator

    monkeypatch.setattr(server_module, "build_emulator", capture)
    monkeypatch.setattr(
        server_module.uvicorn.Server, "run", lambda self, *a, **k: ran.append(self.config)
    )
    out = io.StringIO()
    serve(port=18924, seed=1, rate_limit=2, rate_burst=50, plan="pro", out=out, companies=3)
    text = out.getvalue()
    assert "B24_PORTAL_URL=http://127.0.0.1:18924" in text
    assert f"B24_CLIENT_ID={server_module.DEMO_CLIENT_ID}" in text
    secret = next(iter(built[0].webhooks))
    assert f"http://127.0.0.1:18924/rest/1/{secret}/" in text
    assert len(ran) == 1
    assert built[0].default_portal.crm.count("company") == 3
    assert built[0].default_portal.crm.count("deal") == 0
    serve(port=18925, seed=4, out=io.StringIO())
    assert len(ran) == 2
    demo = built[1].default_portal.crm
    assert [demo.count(e) for e in ("company", "contact", "lead", "deal")] == [
        server_module.DEMO_COUNTS[k] for k in server_module.ENTITY_COUNTS
    ]
    assert built[0].default_portal.limits.rate == 2
    with pytest.raises(ValueError):
        serve(host="0.0.0.0", out=out)


def test_the_emulator_verb_prints_the_port_it_really_bound(tmp_path: Path) -> None:
    """`emulator --port 0` lets the system choose, and prints that port, which answers."""
    import os
    import re
    import subprocess
    import sys

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "emulator", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert found and int(found.group(1)) > 0, first
        answer = httpx.get(f"{found.group(0)}/rest/server.time", timeout=10)
        assert answer.json()["error"] == "NO_AUTH_FOUND"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
