"""Serve the emulator on loopback over HTTP or HTTPS (a throwaway ``trustme`` CA).

``serve(...)`` is what ``b24-connector emulator --port N [--seed N] [--rate-limit R]
[--rate-burst B] [--plan P] [--tls]`` runs: it builds an :class:`Emulator`, installs a
local app with a first token pair, prints how to point the connector at it and runs
uvicorn until interrupted. :class:`ServerThread` runs the same in a background thread
for tests (port 0 picks a free port).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from connector.emulator.app import Emulator

HOST = "127.0.0.1"
DEFAULT_PORT = 8924
DEMO_CLIENT_ID = "local.emulator0000000.00000001"
DEMO_CONNECTOR_ID = "erp_connector"
ENTITY_COUNTS = ("companies", "contacts", "leads", "deals")
DEMO_COUNTS = {"companies": 20, "contacts": 30, "leads": 10, "deals": 15}
"""What ``--seed N`` creates when no counts are given."""


@dataclass
class TlsFiles:
    """The throwaway CA and the server certificate, as PEM files in ``directory``."""

    directory: Path
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def make_tls_files(
    directory: Path | None = None, hosts: tuple[str, ...] = (HOST, "localhost")
) -> TlsFiles:
    """Create a CA with ``trustme`` and a certificate for ``hosts``; write the PEMs."""
    import trustme

    where = (
        Path(directory)
        if directory is not None
        else Path(tempfile.mkdtemp(prefix="b24-emulator-tls-"))
    )
    where.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*hosts)
    files = TlsFiles(where, where / "ca.pem", where / "server.pem", where / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_pem))
    cert.private_key_pem.write_to_path(str(files.key_pem))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_pem))
    for extra in cert.cert_chain_pems[1:]:
        with open(files.cert_pem, "ab") as handle:
            handle.write(extra.bytes())
    return files


def client_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """An SSL context that trusts the emulator's CA."""
    return ssl.create_default_context(cafile=str(tls.ca_pem))


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def build_emulator(
    *,
    seed: int = 0,
    rate_limit: float | None = None,
    rate_burst: int | None = None,
    plan: str = "pro",
) -> Emulator:
    """An emulator with the plan and limiter settings of the ``emulator`` verb.

    ``rate_limit=0`` turns the portal's limiter off (a bucket that never drains would
    refuse everything after the burst).
    """
    if rate_limit is not None and rate_limit <= 0:
        emulator = Emulator(seed=seed, plan=plan, rate_burst=rate_burst)
        emulator.default_portal.limits.configure(enabled=False)
        return emulator
    return Emulator(seed=seed, plan=plan, rate_limit=rate_limit, rate_burst=rate_burst)


def connection_help(
    base_url: str,
    app: dict[str, Any],
    *,
    connector_id: str = DEMO_CONNECTOR_ID,
    ca_file: Path | None = None,
    webhook_url: str | None = None,
) -> str:
    """The lines that tell an operator how to point the connector at the emulator."""
    lines = [
        f"Bitrix24 emulator listening on {base_url}",
        "Point the connector at it:",
        f"  export B24_PORTAL_URL={base_url}",
        f"  export B24_OAUTH_URL={base_url}",
        f"  export B24_CLIENT_ID={app['client_id']}",
        f"  export B24_CLIENT_SECRET={app['client_secret']}",
        f"  export B24_CONNECTOR_ID={connector_id}",
    ]
    if ca_file is not None:
        lines += [
            f"  export REQUESTS_CA_BUNDLE={ca_file}",
            f"  export SSL_CERT_FILE={ca_file}",
        ]
    lines += [
        f"  b24-connector auth set --refresh-token {app['refresh_token']} "
        f"--access-token {app['access_token']}",
        f"Control surface: {base_url}/_emulator/state",
    ]
    if webhook_url is not None:
        lines.append(f"Incoming webhook of user 1 (no event.* methods): {webhook_url}")
    if ca_file is not None:
        lines.append(f"Test CA certificate (PEM): {ca_file}")
    return "\n".join(lines)


def uvicorn_config(
    emulator: Emulator, *, host: str, port: int, tls: TlsFiles | None
) -> uvicorn.Config:
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(ssl_certfile=str(tls.cert_pem), ssl_keyfile=str(tls.key_pem))
    return uvicorn.Config(
        emulator.app(),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        **kwargs,
    )


def serve(
    host: str = HOST,
    port: int = DEFAULT_PORT,
    seed: int | None = None,
    rate_limit: float | None = None,
    rate_burst: int | None = None,
    tls: bool = False,
    plan: str = "pro",
    *,
    out: TextIO | None = None,
    companies: int = 0,
    contacts: int = 0,
    leads: int = 0,
    deals: int = 0,
) -> None:
    """Run the emulator until interrupted (the ``b24-connector emulator`` verb).

    ``seed`` fills the CRM with a deterministic demo set (``DEMO_COUNTS``) before serving;
    ``companies``/``contacts``/``leads``/``deals`` choose other counts. Records are made
    as a UI user before anything is bound, so no events are pending.
    """
    if host not in (HOST, "localhost", "::1"):
        raise ValueError("the emulator only listens on loopback (127.0.0.1)")
    stream = out or sys.stdout
    emulator = build_emulator(
        seed=seed or 0, rate_limit=rate_limit, rate_burst=rate_burst, plan=plan
    )
    if seed is not None and not (companies or contacts or leads or deals):
        companies, contacts, leads, deals = (DEMO_COUNTS[k] for k in ENTITY_COUNTS)
    tls_files = make_tls_files() if tls else None
    scheme = "https" if tls else "http"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # port 0: the system picks one, and it is the one printed
    port = int(sock.getsockname()[1])
    sock.listen(128)  # connections made right after the printout wait for the server
    base_url = f"{scheme}://{host}:{port}"
    app = emulator.install_app(
        DEMO_CLIENT_ID, scopes=("crm", "pull", "user", "placement"), base_url=base_url
    )
    if companies or contacts or leads or deals:
        emulator.seed_crm(companies=companies, contacts=contacts, leads=leads, deals=deals)
    hook = emulator.add_webhook(1)
    print(
        connection_help(
            base_url,
            app,
            ca_file=tls_files.ca_pem if tls_files else None,
            webhook_url=f"{base_url}/rest/1/{hook.secret}/",
        ),
        file=stream,
        flush=True,
    )
    server = uvicorn.Server(uvicorn_config(emulator, host=host, port=port, tls=tls_files))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@dataclass
class ServerThread:
    """The emulator on a real loopback port in a background thread (tests, demos).

    ``with ServerThread(emulator, tls=True) as srv: srv.base_url ...``
    """

    emulator: Emulator
    tls: bool = False
    host: str = HOST
    port: int = 0
    tls_files: TlsFiles | None = None
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        if self.port == 0:
            self.port = free_port(self.host)
        if self.tls and self.tls_files is None:
            self.tls_files = make_tls_files()
        config = uvicorn_config(
            self.emulator, host=self.host, port=self.port, tls=self.tls_files if self.tls else None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="b24-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        assert self._server is not None
        asyncio.run(self._server.serve())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
