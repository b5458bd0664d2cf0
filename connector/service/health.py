"""Health and Prometheus metrics for ``run``, on ``B24_METRICS_PORT`` (loopback by default).

* ``/healthz`` — 200 while the process is alive;
* ``/readyz`` — 200 when the worker is running (start-up done), 503 with its state while
  it starts, retries or stops;
* ``/metrics`` — Prometheus text: what the worker did (records synced per direction, drain
  batches and their duration, push rounds, failures) and, read from the database at each
  scrape, what waits (outbox pending / failed / held, open conflicts, open record errors,
  unfinished drain batches, and the age of the oldest unpushed ERP change).

Its own registry (not the process-global one), so tests and several workers in one
process never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.store.backlog import (
    oldest_pending_at,
    open_conflicts,
    open_record_errors,
    outbox_by_status,
    unfinished_batches,
)
from connector.errors import ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The worker's counters; :class:`StoreGauges` adds what the database holds."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry()
        self.synced = Counter(
            "b24_records_synced",
            "Records synced, by direction (to_erp: portal → ERP, to_portal: ERP → portal)",
            ["direction", "outcome"],
            registry=self.registry,
        )
        self.entities = Counter(
            "b24_entity_records_synced",
            "Records written, by entity and direction",
            ["entity", "direction"],
            registry=self.registry,
        )
        self.batches = Histogram(
            "b24_drain_batch_seconds",
            "Duration of one drain batch (reserve, fetch, apply, clear)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.push_rounds = Counter(
            "b24_push_rounds", "Outbox push rounds that found work", registry=self.registry
        )
        self.failures = Counter(
            "b24_failures",
            "Drain or push rounds that failed and will be retried",
            ["task"],
            registry=self.registry,
        )
        self.drain_lag = Gauge(
            "b24_drain_lag_seconds",
            "Age of the oldest portal change the last drain batch took (portal → ERP lag)",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "b24_queue_depth",
            "Records in the portal's offline queue for this connector (read every minute)",
            registry=self.registry,
        )
        self.requests = Counter(
            "b24_rest_requests",
            "REST requests sent (a batch is one), by method and outcome (ok or the error code)",
            ["method", "outcome"],
            registry=self.registry,
        )
        if engine is not None:
            self.registry.register(StoreGauges(engine))

    def observe_request(self, method: str, outcome: str) -> None:
        self.requests.labels(method, outcome).inc()

    def watch(self, **sources: Callable[[], Any]) -> None:
        """Counters kept by the REST governor, the OAuth flow and the Push&Pull listener,
        read at each scrape (``governor=…, oauth=…, listener=…``: callables)."""
        self.registry.register(LiveCounters(sources))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class StoreGauges(Collector):
    """Gauges read from the sync_ tables at scrape time (a failed read yields none)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.engine.connect() as conn:
                outbox = outbox_by_status(conn)
                oldest = oldest_pending_at(conn)
                conflicts = open_conflicts(conn)
                errors = open_record_errors(conn)
                journal = unfinished_batches(conn)
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            return
        family = GaugeMetricFamily(
            "b24_outbox_rows", "ERP changes not yet pushed, by status", labels=["status"]
        )
        for status in ("pending", "failed", "held"):
            family.add_metric([status], float(outbox.get(status, 0)))
        yield family
        lag = 0.0
        if isinstance(oldest, datetime):
            moment = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            lag = max(0.0, (datetime.now(UTC) - moment).total_seconds())
        yield GaugeMetricFamily(
            "b24_push_lag_seconds", "Age of the oldest ERP change not yet pushed", value=lag
        )
        yield GaugeMetricFamily("b24_conflicts_open", "Open conflicts", value=float(conflicts))
        yield GaugeMetricFamily(
            "b24_record_errors_open", "Records refused for a bad value", value=float(errors)
        )
        yield GaugeMetricFamily(
            "b24_drain_batches_unfinished", "Drain batches not cleared yet", value=float(journal)
        )


class LiveCounters(Collector):
    """The adapters' own counters, exported as they are at scrape time."""

    def __init__(self, sources: Mapping[str, Callable[[], Any]]) -> None:
        self.sources = sources

    def _get(self, name: str) -> Any:
        source = self.sources.get(name)
        return source() if source is not None else None

    def collect(self) -> Iterator[Any]:
        governor, oauth, listener = self._get("governor"), self._get("oauth"), self._get("listener")
        if governor is not None:
            yield CounterMetricFamily(
                "b24_rate_limit_waits",
                "Requests that waited for the rate budget",
                value=float(governor.stats.waited),
            )
            yield CounterMetricFamily(
                "b24_rate_limit_wait_seconds",
                "Seconds spent waiting for the rate budget",
                value=float(governor.stats.waited_s),
            )
            yield CounterMetricFamily(
                "b24_rate_limit_answers",
                "QUERY_LIMIT_EXCEEDED answers from the portal",
                value=float(governor.stats.limit_answers),
            )
        if oauth is not None:
            yield CounterMetricFamily(
                "b24_token_refreshes", "OAuth token refreshes", value=float(oauth.refreshes)
            )
        if listener is not None:
            yield CounterMetricFamily(
                "b24_push_connects",
                "Push&Pull (re)connections",
                value=float(listener.stats.connects),
            )
            yield CounterMetricFamily(
                "b24_push_failures",
                "Push&Pull connection failures",
                value=float(listener.stats.failures),
            )


def health_app(metrics: Metrics, state: Any) -> Any:
    """The Starlette app; ``state()`` answers the worker's state (``running`` is ready)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        current = str(state())
        return PlainTextResponse(f"{current}\n", status_code=200 if current == "running" else 503)

    async def metrics_view(_: Request) -> Response:
        body = await asyncio.to_thread(metrics.text)
        return Response(body, media_type=CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_view),
        ]
    )


class HealthServer:
    """The health app on ``host:port`` as a task of the worker's event loop."""

    def __init__(self, metrics: Metrics, state: Any, host: str, port: int) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the worker owns the signals
                yield

        config = uvicorn.Config(
            health_app(metrics, state),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            log_config=None,  # uvicorn's records go through our handler (text or JSON)
        )
        self.server = Quiet(config)
        self.host, self.port = host, port
        self.task: asyncio.Task[None] | None = None
        self.sock: Any = None

    async def start(self) -> None:
        import socket

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port} (B24_METRICS_PORT, "
                f"B24_METRICS_HOST): {exc.strerror or exc}"
            ) from None
        self.port = int(sock.getsockname()[1])
        self.sock = sock
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]), name="health")
        # uvicorn says "started" with a flag only
        while not self.server.started and not self.task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.task.done():
            try:
                self.task.result()
            except BaseException as exc:  # uvicorn exits when it cannot bind
                raise ConfigError(
                    f"cannot listen on {self.host}:{self.port} (B24_METRICS_PORT): "
                    f"{type(exc).__name__}; is the port in use?"
                ) from None
        log.info(
            "health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", self.host, self.port
        )

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, timeout=5)
        if self.sock is not None:
            self.sock.close()
