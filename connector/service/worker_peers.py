"""The worker's part in a group of workers sharing one database (``Worker`` mixes it in).

* the registry and the lease (``sync_worker``): :meth:`PeerTasks._register` at start-up,
  :meth:`PeerTasks._keep_lease` renewing it and noticing peers whose lease expired (their
  reservations are resumed on the next wake);
* the Push&Pull listener lock: only its holder connects
  (:meth:`PeerTasks._listen_while_holding_lock`, a listener from the composition root's
  :class:`ListenerFactory` each time it takes the lock); the others try for it every few
  seconds;
* peer wakes on PostgreSQL: the holder passes each push on with ``NOTIFY``
  (:meth:`PeerTasks._pushed`), the others ``LISTEN`` (:meth:`PeerTasks._hear_peers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.pull_listener import GetConfig, PullListener
from connector.adapters.safety_poll import SafetyPoll
from connector.adapters.store.db_errors import store_error
from connector.adapters.store.db_locks import ListenerLock
from connector.adapters.store.peer_wake import PeerWake
from connector.adapters.store.workers import WorkerRegistry
from connector.service.worker_upkeep import WorkerPortal

__all__ = ["ListenerFactory", "PeerTasks"]

log = logging.getLogger("connector.worker")


class ListenerFactory(Protocol):
    """A new Push&Pull listener wired to the worker's hooks (``wiring.pull_listeners``
    closes over the HTTP client, the connector ID and the listener's options)."""

    def __call__(
        self,
        *,
        get_config: GetConfig,
        wake: Callable[[str], object],
        on_connect: Callable[[], None],
    ) -> PullListener: ...


class PeerTasks:
    """Lease, listener lock and peer wakes; the state lives on the worker."""

    client: WorkerPortal
    connector_id: str
    listeners: ListenerFactory
    registry: WorkerRegistry
    listener_lock: ListenerLock
    peer_wake: PeerWake
    wake: asyncio.Event
    stopping: asyncio.Event
    listener: PullListener | None
    needs_resume: bool
    dead_peers: list[str]

    async def _get_config(self) -> Mapping[str, Any]:
        answer = await self.client.call("pull.application.config.get")
        return answer.result if isinstance(answer.result, Mapping) else {}

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
                listener = self.listeners(
                    get_config=self._get_config, wake=self._pushed, on_connect=poll.restart
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
