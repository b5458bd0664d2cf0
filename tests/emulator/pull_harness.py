"""Serve a portal's Push&Pull routes on a loopback port for the pull tests.

A tiny Starlette app: ``PullHub.routes()`` plus ``/rest/<method>`` that calls the
registered handler as app ``?client_id=...`` (enough to exercise config.get over HTTP).
uvicorn runs in a background thread with its own event loop, so the tests talk to it
over real sockets with ``websockets`` and ``httpx``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.emulator.context import CallContext
from connector.emulator.portal import Portal
from connector.emulator.pull import PullHub
from connector.emulator.registry import registry
from connector.emulator.rest_errors import RestError

APP = "local.pulltest01"
OTHER_APP = "local.pulltest02"
NGINX = re.compile(r"#!NGINXNMS!#(.*?)#!NGINXNME!#", re.S)


def app_context(client_id: str | None = APP, base_url: str = "http://127.0.0.1:1") -> CallContext:
    return CallContext(client_id=client_id, user_id=1, is_admin=True, base_url=base_url)


async def rest(request: Request) -> JSONResponse:
    """``/rest/<method>[.json]?client_id=APP&...`` → the registered handler's result."""
    name = request.path_params["method"].removesuffix(".json")
    found = registry.lookup(name)
    if found is None:
        return JSONResponse({"error": "ERROR_METHOD_NOT_FOUND"}, 404)
    params = dict(request.query_params)
    client_id = params.pop("client_id", None)
    ctx = app_context(client_id, str(request.base_url).rstrip("/"))
    portal: Portal = request.app.state.portal
    try:
        return JSONResponse({"result": found[0](portal, ctx, params).result})
    except RestError as exc:
        return JSONResponse(exc.body(), exc.status)


@dataclass
class Served:
    portal: Portal
    port: int

    @property
    def hub(self) -> PullHub:
        return self.portal.pull

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, client_id: str = APP, **params: str) -> dict[str, Any]:
        return self.hub.config_for(app_context(client_id, self.http), params)

    def query(
        self,
        config: dict[str, Any],
        *,
        types: tuple[str, ...] = ("shared",),
        mid: str | None = None,
        fmt: str | None = "json",
        client_id: str | None = "config",
    ) -> str:
        params: dict[str, str] = {
            "CHANNEL_ID": "/".join(config["channels"][t]["id"] for t in types)
        }
        if client_id == "config":
            params["clientId"] = config["server"]["clientId"]
        elif client_id is not None:
            params["clientId"] = client_id
        if fmt:
            params["format"] = fmt
        if mid:
            params["mid"] = mid
        return urlencode(params)

    def ws_url(self, config: dict[str, Any], **kw: Any) -> str:
        return f"{config['server']['websocket_secure']}?{self.query(config, **kw)}"

    def lp_url(self, config: dict[str, Any], **kw: Any) -> str:
        return f"{config['server']['long_polling_secure']}?{self.query(config, **kw)}"


@contextmanager
def serve(portal: Portal | None = None) -> Iterator[Served]:
    portal = portal or Portal()
    app = Starlette(routes=[*portal.pull.routes(), Route("/rest/{method}", rest)])
    app.state.portal = portal
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(portal, port)
    finally:
        server.should_exit = True
        thread.join(10)


def messages_of(frame: str | bytes) -> list[dict[str, Any]]:
    """Decode one frame / body in any of the framings into message objects."""
    text = frame.decode() if isinstance(frame, bytes) else frame
    if text.startswith("#!NGINXNMS!#"):
        return [json.loads(part) for part in NGINX.findall(text)]
    data = json.loads(text)
    if isinstance(data, dict) and data.get("jsonrpc") == "2.0":
        data = [data]
    if data and isinstance(data[0], dict) and data[0].get("jsonrpc") == "2.0":
        return [{"mid": c["params"]["mid"], "text": c["params"]["body"]} for c in data]
    assert isinstance(data, list)
    return data
