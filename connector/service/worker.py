"""``b24-connector run``: the long-running worker.

Start-up: check features and bind the offline events, resume every unfinished batch.
Then four tasks run side by side until SIGTERM/SIGINT:

* the Push&Pull listener — wakes the drain on ``event_offline`` for our connector;
* the safety poll — wakes it every ``poll_interval`` seconds and after every reconnect,
  because a push is only a hint;
* the drain loop — on each wake, drains the queue until it is empty;
* the push loop — every ``push_interval`` seconds, pushes the ERP's outbox until it is
  empty. Drain batches and push rounds take turns (one lock), so the two directions never
  merge the same record at the same moment.

Several workers may share one PostgreSQL (or MariaDB) database. Each registers in
``sync_worker`` and renews its lease (the lease task); when a peer's lease expires, the
next wake resumes its reservations. Only the holder of the listener lock connects to
Push&Pull (the others try for it every few seconds and take over when the holder dies);
on PostgreSQL the holder passes each push on through ``NOTIFY``, elsewhere the peers
rely on their safety poll. SQLite is single-worker and says so if a second one starts.

A stop request lets the batch in flight finish (commit, then ``event.offline.clear``) and
then exits 0. Portal trouble that retries cannot mend (network down for long, 5xx) is
logged and the loop waits for the next wake; a fatal answer (``OVERLOAD_LIMIT``) or a
revoked refresh token ends the worker with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.pull_listener import PullListener
from connector.adapters.safety_poll import SafetyPoll
from connector.adapters.store.db_errors import store_error
from connector.adapters.store.db_locks import ListenerLock
from connector.adapters.store.peer_wake import PeerWake
from connector.adapters.store.workers import WorkerRegistry
from connector.core.mapping_model import MappingSet
from connector.errors import (
    AuthRevokedError,
    ConnectorError,
    FatalPortalError,
    RetriableError,
    StoreError,
)
from connector.service.bindings import ensure_bindings
from connector.service.drainer import Drainer
from connector.service.health import HealthServer, Metrics
from connector.service.holds import Holds
from connector.service.pusher import Pusher
from connector.service.reconcile import note_bindings
from connector.service.worker_counts import count_drain
from connector.service.worker_loops import WorkerStats, WorkLoops
from connector.service.worker_peers import ListenerFactory, PeerTasks
from connector.service.worker_upkeep import Keep, UpkeepTasks, WorkerPortal

log = logging.getLogger("connector.worker")


class Worker(PeerTasks, UpkeepTasks, WorkLoops):
    def __init__(
        self,
        client: WorkerPortal,
        engine: Engine,
        mappings: MappingSet,
        connector_id: str,
        *,
        drainer: Drainer,
        pusher: Pusher,
        holds: Holds,
        registry: WorkerRegistry,
        listener_lock: ListenerLock,
        peer_wake: PeerWake,
        listeners: ListenerFactory,
        metrics: Metrics,
        poll_interval: float = 60.0,
        push_interval: float = 1.0,
        listen: bool = True,
        health: tuple[str, int] | None = None,
        keep: Keep | None = None,
    ) -> None:
        """Every collaborator comes from the composition root (``wiring.worker``): the
        drainer, the pusher and the holds of one worker identity (``registry``), the
        listener lock, the peer wakes, the Push&Pull listeners and the metrics."""
        self.client = client
        self.engine = engine
        self.mappings = mappings
        self.connector_id = connector_id
        self.poll_interval = poll_interval
        self.listen = listen
        self.push_interval = push_interval
        self.keep = keep or Keep()
        self.registry = registry
        self.listener_lock = listener_lock
        self.peer_wake = peer_wake
        self.listeners = listeners
        self.drainer, self.pusher = drainer, pusher
        self.holds = holds
        self.turns = asyncio.Lock()
        self.fatal = None
        self.metrics = metrics
        self.health = health
        self.state = "starting"
        self.db_failures = 0
        self.troubled: set[str] = set()  # tasks waiting out the portal or the database
        self.stats = WorkerStats()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.listener: PullListener | None = None
        self.needs_resume = False
        self.dead_peers: list[str] = []  # expired leases whose reservations await a resume

    def stop(self) -> None:
        """Ask the worker to finish the batch in flight and exit."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> WorkerStats:
        server: HealthServer | None = None
        if self.health is not None:
            server = HealthServer(self.metrics, self.current_state, *self.health)
            await server.start()
        try:
            return await self._run()
        except BaseException:
            self.state = "failed"
            raise
        finally:
            if self.state != "failed":
                self.state = "stopped"
            if server is not None:
                await server.stop()

    async def _start_up(self) -> None:
        """Bindings, resume, sweep — retried while the portal or the database is away
        (``/readyz`` says ``starting``); a failure waiting cannot mend ends the worker."""
        failures = 0
        while True:
            try:
                await self._register()
                report = await ensure_bindings(self.client, self.mappings, self.connector_id)
                await asyncio.to_thread(note_bindings, self.engine, self.mappings, report.bound)
                started = time.monotonic()
                resumed = await self.drainer.resume()
                if resumed.records:
                    count_drain(self.metrics, resumed, time.monotonic() - started)
                self.stats.totals.add(resumed)
                self.stats.totals.add(await self.holds.sweep())
                return
            except (RetriableError, SQLAlchemyError, StoreError) as exc:
                if isinstance(exc, StoreError) and not exc.transient:
                    raise
                if isinstance(exc, SQLAlchemyError) and not store_error(exc).transient:
                    raise store_error(exc) from exc
                failures += 1
                delay = min(30.0, 2.0 * failures)
                log.warning("start-up waits %.0f s: %s", delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                if self.stopping.is_set():
                    raise asyncio.CancelledError from None

    async def _run(self) -> WorkerStats:
        # A stop during start-up (the portal away, retries in progress) is answered at once.
        starting = asyncio.create_task(self._start_up(), name="start-up")
        stopped = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return self.stats
        stopped.cancel()
        try:
            starting.result()
        except asyncio.CancelledError:
            if self.stopping.is_set():
                return self.stats
            raise
        poll = SafetyPoll(self.wake, interval=self.poll_interval)
        tasks = [
            asyncio.create_task(self._supervised("safety-poll", poll.run), name="safety-poll"),
            asyncio.create_task(self._supervised("pusher", self._push_loop), name="pusher"),
            asyncio.create_task(self._supervised("lease", self._keep_lease), name="lease"),
            asyncio.create_task(
                self._supervised("housekeeping", self._housekeeping), name="housekeeping"
            ),
            asyncio.create_task(
                self._supervised("reconcile", self._reconcile_gaps), name="reconcile"
            ),
        ]
        if self.peer_wake.available:
            tasks.append(asyncio.create_task(self._supervised("peer-wake", self._hear_peers)))
        if self.health is not None:  # queue depth for /metrics: one list call a minute
            tasks.append(asyncio.create_task(self._supervised("queue-watch", self._watch_queue)))
        if self.listen:

            async def listen() -> None:
                await self._listen_while_holding_lock(poll)

            tasks.append(
                asyncio.create_task(self._supervised("pull-listener", listen), name="pull-listener")
            )
        self.wake.set()  # drain once at start: work may have queued while we were down
        self.ready.set()
        self.state = "running"
        log.info("worker running", extra={"connector": self.connector_id})
        try:
            await self._drain_loop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(SQLAlchemyError):
                await asyncio.to_thread(self.registry.retire)  # peers need not wait the lease
        if self.fatal is not None:
            self.state = "failed"
            raise self.fatal
        return self.stats

    def current_state(self) -> str:
        """starting, running, degraded (Push&Pull down: polling only; the portal or the
        database being waited out), stopped, failed."""
        listener = self.listener
        push_down = listener is not None and listener.stats.state in (
            "reconnecting",
            "unsupported",
        )
        if self.state == "running" and (self.troubled or push_down):
            return "degraded"
        return self.state

    async def _supervised(self, name: str, body: Callable[[], Awaitable[Any]]) -> None:
        """Run a background task; restart it with back-off when it dies of something
        waiting may mend, stop the worker (exit 1, one line naming the cause) otherwise."""
        failures = 0
        while not self.stopping.is_set():
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except (FatalPortalError, AuthRevokedError, ConnectorError) as exc:
                if isinstance(exc, RetriableError) or (
                    isinstance(exc, StoreError) and exc.transient
                ):
                    pass  # transient: restart below
                else:
                    log.error("%s stopped the worker: %s", name, exc)
                    self.fatal = exc
                    self.stop()
                    return
            except (OSError, SQLAlchemyError, httpx.HTTPError) as exc:
                log.warning("%s failed (%s: %s); restarting it", name, type(exc).__name__, exc)
            except Exception as exc:
                self.fatal = ConnectorError(f"{name} died: {type(exc).__name__}: {exc}")
                log.error("%s", self.fatal.message)
                self.stop()
                return
            failures += 1
            self.metrics.failures.labels(name).inc()
            delay = min(30.0, 0.5 * 2 ** min(failures, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM/SIGINT: finish the batch in flight, then exit 0; a second one aborts at once
    (exit 1 — the journal makes that safe: the next start resumes what was reserved)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if worker.stopping.is_set():
            log.warning("second %s: aborting now; the next start resumes the batch", sig.name)
            os._exit(1)
        log.info("%s: finishing the batch in flight, then stopping", sig.name)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
