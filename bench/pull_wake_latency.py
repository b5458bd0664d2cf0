"""Time from an emulator UI-user change to the Push&Pull listener's "drain now" wake.

Runs the emulator (uvicorn on a free loopback port, background thread), binds an
offline event for our connector, starts :class:`PullListener` over WebSocket (or long
polling with ``--long-polling``), then makes N UI changes one after another and times
each from just before ``ui_update`` to the ``"push"`` wake. Prints p50, p95 and max.

    .venv/bin/python bench/pull_wake_latency.py [--changes 100] [--version 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from typing import Any

import httpx

from connector.adapters.pull_listener import PullListener
from connector.core.reconnect import Ladder
from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread

APP = "local.bench.pullwake"
CONNECTOR = "erp"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def measure(changes: int, version: int, long_polling: bool) -> dict[str, Any]:
    emulator = Emulator()
    pull = emulator.default_portal.pull
    pull.set_version(version)
    if long_polling:
        pull.refuse_websocket(403)
        pull.settings.hold_timeout = 2.0
    with ServerThread(emulator) as server:
        app = emulator.install_app(APP, scopes=("crm", "pull"), base_url=server.base_url)
        token = app["access_token"]
        async with httpx.AsyncClient() as http:

            async def get_config() -> dict[str, Any]:
                response = await http.get(
                    f"{server.base_url}/rest/pull.application.config.get",
                    params={"auth": token},
                )
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body

            bound = await http.post(
                f"{server.base_url}/rest/event.bind",
                data={
                    "auth": token,
                    "event": "ONCRMCOMPANYUPDATE",
                    "event_type": "offline",
                    "auth_connector": CONNECTOR,
                },
            )
            bound.raise_for_status()
            company = emulator.ui_add("company", {"TITLE": "Bench"})
            woke = asyncio.Event()

            def wake(reason: str) -> None:
                if reason == "push":
                    woke.set()

            listener = PullListener(
                get_config=get_config,
                connector_id=CONNECTOR,
                wake=wake,
                http=http,
                ladder=Ladder().scaled(0.001),
                ws_proxy=None,
            )
            task = asyncio.create_task(listener.run())
            kind = "long_poll" if long_polling else "websocket"
            async with asyncio.timeout(30):
                await pull.wait_for_connections(1, kind=kind)
            samples: list[float] = []
            try:
                for n in range(changes):
                    if long_polling:  # make the change while a poll is held
                        async with asyncio.timeout(10):
                            await pull.wait_for_connections(1, kind=kind)
                    woke.clear()
                    started = time.perf_counter()
                    emulator.ui_update("company", company, {"TITLE": f"Bench {n}"})
                    async with asyncio.timeout(10):
                        await woke.wait()
                    samples.append(time.perf_counter() - started)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return {
        "changes": changes,
        "transport": "long_polling" if long_polling else "websocket",
        "server_version": version,
        "p50_ms": round(percentile(samples, 50) * 1000, 2),
        "p95_ms": round(percentile(samples, 95) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--version", type=int, default=4, choices=(3, 4))
    parser.add_argument("--long-polling", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(measure(args.changes, args.version, args.long_polling))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['changes']} UI changes over {result['transport']} "
            f"(server v{result['server_version']}): p50 {result['p50_ms']} ms, "
            f"p95 {result['p95_ms']} ms, max {result['max_ms']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
