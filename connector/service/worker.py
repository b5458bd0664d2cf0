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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.pull_listener import PullListener
from connector.adapters.safety_poll import SafetyPoll
from connector.adapters.store.db_errors import store_error
from connector.adapters.store.db_locks import ListenerLock
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.housekeeping import JOURNAL_KEEP, OUTBOX_KEEP, prune
from connector.adapters.store.journal import Journal
from connector.adapters.store.outbox import OutboxStore
from connector.adapters.store.peer_wake import PeerWake
from connector.adapters.store.workers import WorkerRegistry
from connector.core.mapping_model import MappingSet
from connector.errors import (
    AuthRevokedError,
    ConnectorError,
    FatalPortalError,
    PortalError,
    RetriableError,
    StoreError,
)
from connector.service.bindings import ensure_bindings
from connector.service.drainer import QUEUE_LIMIT, Drainer, DrainStats, PortalCalls
from connector.service.health import HealthServer, Metrics
from connector.service.holds import Holds
from connector.service.pusher import Pusher, PushStats
from connector.service.reconcile import ReconcilePortal, note_bindings, run_pending

log = logging.getLogger("connector.worker")


@dataclass(frozen=True)
class Keep:
    """How long ``run`` keeps its own rows (``adapters/store/housekeeping``), and how
    often it prunes (``B24_JOURNAL_KEEP_HOURS``, ``B24_OUTBOX_KEEP_DAYS``,
    ``B24_PRUNE_INTERVAL``)."""

    journal: timedelta = JOURNAL_KEEP
    outbox: timedelta = OUTBOX_KEEP
    every: float = 3600.0


class WorkerPortal(PortalCalls, ReconcilePortal, Protocol):
    """What the worker needs from the REST client: calls, batches and ID-window pages
    (the reconcile after missing bindings)."""


@dataclass
class WorkerStats:
    wakes: int = 0
    drains: int = 0
    failures: int = 0
    totals: DrainStats = field(default_factory=DrainStats)
    pushed: PushStats = field(default_factory=PushStats)
    push_failures: int = 0


class Worker:
    def __init__(
        self,
        client: WorkerPortal,
        http: httpx.AsyncClient,
        engine: Engine,
        mappings: MappingSet,
        connector_id: str,
        *,
        poll_interval: float = 60.0,
        push_interval: float = 1.0,
        listen: bool = True,
        listener_options: Mapping[str, Any] | None = None,
        writer: ErpWriter | None = None,
        metrics: Metrics | None = None,
        health: tuple[str, int] | None = None,
        registry: WorkerRegistry | None = None,
        queue_limit: int = QUEUE_LIMIT,
        keep: Keep | None = None,
    ) -> None:
        self.client = client
        self.http = http
        self.engine = engine
        self.mappings = mappings
        self.connector_id = connector_id
        self.poll_interval = poll_interval
        self.listen = listen
        self.listener_options = dict(listener_options or {})
        self.push_interval = push_interval
        self.keep = keep or Keep()
        self.registry = registry or WorkerRegistry(engine, connector_id)
        self.listener_lock = ListenerLock(engine, connector_id)
        self.peer_wake = PeerWake(engine, connector_id)
        self.drainer = Drainer(
            client,
            engine,
            mappings,
            connector_id,
            writer=writer,
            journal=Journal(engine, connector_id, self.registry.id),
            peers_alive=lambda: bool(self.registry.peers()),
            limit=queue_limit,
        )
        self.pusher = Pusher(
            client,
            engine,
            mappings,
            connector_id,
            writer=self.drainer.writer,
            outbox=OutboxStore(engine, worker=self.registry.id),  # claims end with the lease
        )
        self.holds = Holds(self.drainer)
        self.turns = asyncio.Lock()
        self.fatal: BaseException | None = None
        self.metrics = metrics or Metrics()
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

    async def _get_config(self) -> Mapping[str, Any]:
        answer = await self.client.call("pull.application.config.get")
        return answer.result if isinstance(answer.result, Mapping) else {}

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
                    self._count_drain(resumed, time.monotonic() - started)
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

    async def _register(self) -> None:
        peers = await asyncio.to_thread(self.registry.register)
        log.info("worker registered", extra={"worker": self.registry.id, "peers": len(peers)})
        if peers and not self.listener_lock.shared:
            other = peers[0]
            log.warning(
                "SQLite is single-worker, but worker %s (pid %d on %s) is also running on "
                "this database: stop one of them, or move to PostgreSQL for several",
                other.id,
                other.pid,
                other.host,
            )

    async def _keep_lease(self) -> None:
        """Renew our lease; notice peers whose lease expired (their batches need us)."""
        every = self.registry.lease_s / 3
        while not self.stopping.is_set():
            holding = self.listener is not None
            await asyncio.to_thread(self.registry.heartbeat, listener=holding)
            dead = [w.id for w in await asyncio.to_thread(self.registry.expired)]
            if dead and dead != self.dead_peers:
                log.warning(
                    "worker(s) %s stopped renewing their lease; adopting their work",
                    ", ".join(dead),
                )
                self.dead_peers = dead
                self.needs_resume = True
                self.wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every)

    async def _housekeeping(self) -> None:
        """Prune what the connector's own tables no longer need: now, then hourly (its
        own task, so a slow prune never delays the lease's heartbeat)."""
        keep = self.keep
        while not self.stopping.is_set():
            gone = await asyncio.to_thread(
                prune, self.engine, journal_keep=keep.journal, outbox_keep=keep.outbox
            )
            if gone.journal or gone.outbox:
                log.info(
                    "pruned %d cleared journal entries and %d done outbox rows",
                    gone.journal,
                    gone.outbox,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=keep.every)

    async def _reconcile_gaps(self) -> None:
        """Scheduled reconciles (bindings found missing), after start-up, beside the drain
        and the push: a long one delays nothing, a failed one stays scheduled."""
        try:
            await run_pending(self.client, self.engine, self.mappings, self.connector_id)
        except (RetriableError, FatalPortalError, AuthRevokedError, StoreError):
            raise  # the supervisor decides: run it again, or stop the worker
        except ConnectorError as exc:  # a record or an answer it cannot use: say so, go on
            log.error("a scheduled reconcile failed and stays scheduled: %s", exc)

    def _pushed(self, reason: str) -> None:
        """A wake from Push&Pull: drain here, and tell the peers (PostgreSQL)."""
        self.wake.set()
        if reason == "push" and self.peer_wake.available:
            task = asyncio.get_running_loop().run_in_executor(None, self._notify_peers)
            task.add_done_callback(lambda _: None)

    def _notify_peers(self) -> None:
        try:
            self.peer_wake.notify()
        except SQLAlchemyError as exc:  # the peers still have their safety poll
            log.warning("peers not notified: %s", store_error(exc).message)

    async def _hear_peers(self) -> None:
        """PostgreSQL: wake on the listener holder's NOTIFY."""
        import threading

        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def woken() -> None:
            loop.call_soon_threadsafe(self.wake.set)

        try:
            await asyncio.to_thread(self.peer_wake.listen, woken, stop)
        finally:
            stop.set()

    async def _listen_while_holding_lock(self, poll: SafetyPoll) -> None:
        """Connect to Push&Pull only while holding the listener lock; try for it every
        few seconds otherwise (a dead holder's lock is freed with its connection)."""
        retry = min(5.0, self.registry.lease_s / 3)
        try:
            while not self.stopping.is_set():
                if not await asyncio.to_thread(self.listener_lock.try_acquire):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=retry)
                    continue
                log.info("holding the Push&Pull listener lock", extra={"worker": self.registry.id})
                listener = PullListener(
                    get_config=self._get_config,
                    connector_id=self.connector_id,
                    wake=self._pushed,
                    http=self.http,
                    on_connect=poll.restart,
                    **self.listener_options,
                )
                self.listener = listener
                listening = asyncio.create_task(listener.run(), name="pull-listener")
                try:
                    while not listening.done():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(listening), timeout=retry)
                        if not listening.done() and not await asyncio.to_thread(
                            self.listener_lock.held
                        ):
                            log.warning("lost the listener lock; stopping Push&Pull here")
                            break
                    if listening.done():
                        listening.result()  # a listener failure: the supervisor restarts us
                        return
                finally:
                    listening.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listening
                    self.listener = None
        finally:
            await asyncio.to_thread(self.listener_lock.release)

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

    async def _watch_queue(self, every: float = 60.0) -> None:
        while not self.stopping.is_set():
            try:
                answer = await self.client.call("event.offline.list", {"start": 0})
            except (PortalError, StoreError) as exc:  # only a metric: never worth a stop
                log.warning("queue depth not read: %s", exc)
            else:
                total = getattr(answer, "total", None)
                rows = answer.result if isinstance(answer.result, list) else []
                self.metrics.queue_depth.set(float(total if total is not None else len(rows)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every)

    async def _push_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                async with self.turns:
                    pushed = await self.pusher.push_until_empty(max_rounds=1)
                self.stats.pushed.add(pushed)
                self._count_push(pushed)
                self.db_failures = 0
                self.troubled.discard("push")
            except (FatalPortalError, AuthRevokedError) as exc:
                self.fatal = exc
                self.stop()
                return
            except PortalError as exc:
                self.stats.push_failures += 1
                self.troubled.add("push")  # the portal is being waited out
                self.metrics.failures.labels("push").inc()
                log.warning("push failed, retrying in %.0f s: %s", self.push_interval, exc)
            except (SQLAlchemyError, StoreError) as exc:
                if not self._database_failed("push", exc):
                    return
                await self._back_off()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.push_interval)

    async def _drain_loop(self) -> None:
        while not self.stopping.is_set():
            await self.wake.wait()
            self.wake.clear()
            if self.stopping.is_set():
                break
            self.stats.wakes += 1
            try:
                if self.needs_resume:  # a failed batch (or a dead peer) may hold records
                    dead = list(self.dead_peers)
                    started = time.monotonic()
                    async with self.turns:
                        resumed = await self.drainer.resume()
                    if resumed.records:  # adopted batches are synced records too
                        self._count_drain(resumed, time.monotonic() - started)
                    self.stats.totals.add(resumed)
                    self.needs_resume = False
                    if dead:
                        await asyncio.to_thread(self.registry.reap, dead)
                while not self.stopping.is_set():
                    started = time.monotonic()
                    async with self.turns:
                        batch = await self.drainer.drain_once()
                    if batch.records:
                        self._count_drain(batch, time.monotonic() - started)
                    self.stats.totals.add(batch)
                    if not batch.records:
                        break
                async with self.turns:
                    await self.drainer.flush()  # a stop before the queue ran empty
                    self.stats.totals.add(await self.holds.settle())
                self.stats.drains += 1
            except (FatalPortalError, AuthRevokedError):
                raise
            except PortalError as exc:
                self.stats.failures += 1
                self.troubled.add("drain")
                self.metrics.failures.labels("drain").inc()
                self.needs_resume = True
                log.warning("drain failed, waiting for the next wake: %s", exc)
            except (SQLAlchemyError, StoreError) as exc:
                self.needs_resume = True  # a batch may be reserved; resume adopts it
                if not self._database_failed("drain", exc):
                    return
                await self._back_off()
                self.wake.set()
            else:
                self.db_failures = 0
                self.troubled.discard("drain")

    def _database_failed(self, task: str, exc: SQLAlchemyError | StoreError) -> bool:
        """Log the database's failure in one line; False when waiting cannot mend it."""
        error = exc if isinstance(exc, StoreError) else store_error(exc)
        self.metrics.failures.labels(task).inc()
        if not error.transient:
            log.error("%s stopped: %s", task, error.message)
            self.fatal = error
            self.stop()
            return False
        self.troubled.add(task)
        self.db_failures += 1
        log.warning("%s waits for the database: %s", task, error.message)
        return True

    async def _back_off(self) -> None:
        delay = min(10.0, 0.25 * 2 ** min(self.db_failures, 6))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)

    def _count_drain(self, batch: DrainStats, seconds: float) -> None:
        self.metrics.batches.observe(seconds)
        self.metrics.drain_lag.set(batch.lag_s)
        for entity, n in batch.by_entity.items():
            self.metrics.entities.labels(entity, "to_erp").inc(n)
        for outcome in ("inserted", "updated", "deleted", "unchanged", "conflicts", "bad"):
            if getattr(batch, outcome):
                self.metrics.synced.labels("to_erp", outcome).inc(getattr(batch, outcome))
        log.info(
            "drain.batch",
            extra={
                "records": batch.records,
                "inserted": batch.inserted,
                "updated": batch.updated,
                "deleted": batch.deleted,
                "conflicts": batch.conflicts,
                "bad": batch.bad,
                "ms": round(seconds * 1000),
            },
        )

    def _count_push(self, pushed: PushStats) -> None:
        if not pushed.records:
            return
        self.metrics.push_rounds.inc()
        for entity, n in pushed.by_entity.items():
            self.metrics.entities.labels(entity, "to_portal").inc(n)
        for outcome in ("added", "updated", "deleted", "unchanged", "held", "failed"):
            if getattr(pushed, outcome):
                self.metrics.synced.labels("to_portal", outcome).inc(getattr(pushed, outcome))
        log.info(
            "push.round",
            extra={
                "records": pushed.records,
                "added": pushed.added,
                "updated": pushed.updated,
                "deleted": pushed.deleted,
                "held": pushed.held,
                "failed": pushed.failed,
            },
        )


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
