"""The emulator in its own process, its control surface over HTTP, scratch databases.

Shared by the benchmarks: every timing runs the emulator as ``python -m connector
emulator`` on a free loopback port with its real leaky-bucket limiter, so it never
competes with the connector for the GIL, and talks to it only over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connector.emulator.server import free_port
from connector.settings import normalize_database_url

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


# --- the emulator in its own process -------------------------------------------------------


@dataclass
class EmulatorProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    access_token: str
    client_id: str
    stderr_path: Path
    client_secret: str = ""
    refresh_token: str = ""
    webhook_url: str = ""
    ca_pem: Path | None = None  # with ``tls=True``: the throwaway CA the server's cert is from

    def stop(self) -> None:
        """Stop the emulator process we started (by its own handle, never by name)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def emulator_process(
    folder: Path, rate: float, burst: int, timeout: float = 30.0, *, tls: bool = False
) -> Iterator[EmulatorProcess]:
    """``python -m connector emulator`` on a free loopback port, until the block ends
    (``tls``: HTTPS with a throwaway CA, for clients that only speak HTTPS)."""
    port = free_port(HOST)
    out_path, err_path = folder / "emulator.out", folder / "emulator.err"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "connector", "emulator", "--port", str(port)]
    command += ["--rate-limit", f"{rate:g}", "--rate-burst", str(burst)]
    command += ["--tls"] if tls else []
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env
        )
    emulator: EmulatorProcess | None = None
    try:
        deadline = time.monotonic() + timeout
        text = ""
        while "Control surface:" not in text:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the emulator exited with {proc.returncode}: "
                    f"{err_path.read_text(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator printed no connection help in time")
            time.sleep(0.05)
            text = out_path.read_text(errors="replace")
        listening = re.search(r"listening on (\S+)", text)
        token = re.search(r"--access-token (\S+)", text)
        client_id = re.search(r"B24_CLIENT_ID=(\S+)", text)
        if not (listening and token and client_id):
            raise RuntimeError(f"unexpected emulator output:\n{text}")
        base_url = listening.group(1).rstrip("/")
        if not base_url.startswith((f"http://{HOST}:", f"https://{HOST}:")):
            raise RuntimeError(f"the emulator is not on loopback: {base_url}")

        def printed(pattern: str) -> str:
            found = re.search(pattern, text)
            return found.group(1) if found else ""

        ca = printed(r"Test CA certificate \(PEM\): (\S+)")
        emulator = EmulatorProcess(
            proc,
            base_url,
            token.group(1),
            client_id.group(1),
            stderr_path=err_path,
            client_secret=printed(r"B24_CLIENT_SECRET=(\S+)"),
            refresh_token=printed(r"--refresh-token (\S+)"),
            webhook_url=printed(r"Incoming webhook of user 1 \(no event\.\* methods\): (\S+)"),
            ca_pem=Path(ca) if ca else None,
        )
        verify: Any = str(emulator.ca_pem) if emulator.ca_pem else True
        while True:  # uvicorn binds the port just after the help is printed
            try:
                state = httpx.get(f"{base_url}/_emulator/state", timeout=2, verify=verify)
                if state.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the emulator did not answer on {base_url}: "
                    f"{err_path.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)
        yield emulator
    finally:
        if emulator is not None:
            emulator.stop()
        elif proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


class Control:
    """The emulator's ``/_emulator/`` control surface over HTTP."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base = f"{base_url}/_emulator"

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, self.base + path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def limits(self) -> dict[str, Any]:
        state = await self._json("GET", "/state")
        portal = next(p for p in state["portals"] if p["default"])
        limits: dict[str, Any] = portal["limits"]
        limits["requests_logged"] = state["requests"]
        return limits

    async def reset_bucket(self) -> None:
        await self._json("POST", "/limits", json={"reset": True})

    async def log(self, since: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = await self._json("GET", "/log", params={"since": since})
        return entries

    async def queue(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._json("GET", "/queue")
        return rows


@contextmanager
def scratch_database(
    db: str, folder: Path, prefix: str = "bench_push"
) -> Iterator[tuple[str, str]]:
    """(backend, URL) of a fresh database: a new SQLite file, or a scratch database on
    the server ``db`` names (created here, dropped at the end)."""
    if db == "sqlite":
        yield "sqlite", f"sqlite:///{folder / (prefix + '.db')}"
        return
    url = make_url(normalize_database_url(db))
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and Path(url.database).exists():
            raise SystemExit(f"{url.database} exists: the bench needs a fresh SQLite file")
        yield "sqlite", url.render_as_string(hide_password=False)
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        shown = url.render_as_string(hide_password=True)
        raise SystemExit(f"cannot create a scratch database on {shown}: {exc}") from None
    try:
        yield backend, url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


async def control_post(http: httpx.AsyncClient, base_url: str, path: str, body: Any) -> Any:
    """POST to the control surface (``/_emulator/<path>``) and return its JSON."""
    response = await http.post(f"{base_url}/_emulator/{path}", json=body)
    response.raise_for_status()
    return response.json()


async def seed_companies(http: httpx.AsyncClient, base_url: str, count: int) -> None:
    """``count`` companies added as a UI user (limiter off meanwhile, then reset on)."""
    await control_post(http, base_url, "limits", {"enabled": False})
    await control_post(http, base_url, "seed", {"companies": count})
    await control_post(http, base_url, "limits", {"enabled": True, "reset": True})


async def fill_buckets(client: Any, control: Control, cap: float) -> None:
    """The steady state of a long run before the clock starts: the emulator's bucket and
    the client's governor both filled to the governor's ``cap``, so every timed request
    waits its turn (a fresh bucket's burst would flatter a short run)."""
    await control.reset_bucket()
    await asyncio.gather(*(client.call("server.time") for _ in range(int(cap))))
