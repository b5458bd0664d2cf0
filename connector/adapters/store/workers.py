"""Worker identities and heartbeat leases (``sync_worker``).

Every ``run`` process registers a row (id, host, pid) and renews its lease every
``lease_s / 3`` seconds. A worker whose ``lease_until`` has passed is dead: its journal
entries may be adopted by a live peer (``Journal.unfinished`` / ``Journal.adopt``), and
its row is reaped. A clean stop deletes the row at once, and a worker of this host
whose process is gone (``kill -9``) is declared dead at once, without waiting out its
lease, by the next worker that registers or renews here. Times come from this process's
clock; workers sharing a database are expected to run NTP (a lease of 30 s tolerates
seconds of skew).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine

from connector.adapters.store.local_process import host_identity, process_gone
from connector.adapters.store.tables import sync_worker

__all__ = ["PeerWorker", "WorkerRegistry", "new_worker_id"]

DEFAULT_LEASE_S = 30.0


def new_worker_id() -> str:
    host = socket.gethostname()[:60] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class PeerWorker:
    id: str
    host: str
    pid: int
    lease_until: datetime
    listener: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class WorkerRegistry:
    """This process's row in ``sync_worker`` and a view of its peers."""

    def __init__(
        self,
        engine: Engine,
        connector_id: str,
        *,
        worker_id: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.id = worker_id or new_worker_id()
        self.lease = timedelta(seconds=lease_s)

    @property
    def lease_s(self) -> float:
        return self.lease.total_seconds()

    def register(self) -> list[PeerWorker]:
        """Write (or renew) this worker's row; return the live peers found."""
        self.heartbeat()
        return self.peers()

    def expire_gone_local(self) -> list[str]:
        """End the lease of every worker of this host whose process no longer exists."""
        here = host_identity()
        gone = [
            w.id
            for w in self._rows()
            if w.id != self.id and w.host == here and w.lease_until > _now() and process_gone(w.pid)
        ]
        if gone:
            with self.engine.begin() as conn:
                conn.execute(
                    sync_worker.update()
                    .where(sync_worker.c.id.in_(gone))
                    .values(lease_until=_now() - timedelta(seconds=1))
                )
        return gone

    def heartbeat(self, *, listener: bool | None = None) -> None:
        now = _now()
        values: dict[str, object] = {"heartbeat_at": now, "lease_until": now + self.lease}
        if listener is not None:
            values["listener"] = listener
        self.expire_gone_local()
        with self.engine.begin() as conn:
            done = conn.execute(
                sync_worker.update().where(sync_worker.c.id == self.id).values(**values)
            )
            if not done.rowcount:
                conn.execute(
                    sync_worker.insert().values(
                        id=self.id,
                        connector_id=self.connector_id,
                        host=host_identity()[:255],
                        pid=os.getpid(),
                        started_at=now,
                        listener=bool(listener),
                        **{k: v for k, v in values.items() if k != "listener"},
                    )
                )

    def peers(self) -> list[PeerWorker]:
        """Other workers of this connector whose lease has not expired."""
        return [w for w in self._rows() if w.id != self.id and w.lease_until > _now()]

    def expired(self) -> list[PeerWorker]:
        return [w for w in self._rows() if w.id != self.id and w.lease_until <= _now()]

    def reap(self, ids: list[str]) -> None:
        """Forget dead workers whose reservations have been adopted. A row stays until
        ten leases after its expiry: outbox claims name it, and an expired holder is what
        frees them (``OutboxStore.claim``)."""
        if ids:
            with self.engine.begin() as conn:
                conn.execute(
                    sync_worker.delete().where(
                        sync_worker.c.id.in_(ids),
                        sync_worker.c.lease_until <= _now() - 10 * self.lease,
                    )
                )

    def retire(self) -> None:
        """A clean stop: the row goes, so no peer waits out the lease."""
        with self.engine.begin() as conn:
            conn.execute(sync_worker.delete().where(sync_worker.c.id == self.id))

    def live_ids(self) -> set[str]:
        now = _now()
        return {w.id for w in self._rows() if w.lease_until > now}

    def _rows(self) -> list[PeerWorker]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sync_worker).where(sync_worker.c.connector_id == self.connector_id)
            ).mappings()
            return [
                PeerWorker(
                    r["id"], r["host"], int(r["pid"]), _aware(r["lease_until"]), bool(r["listener"])
                )
                for r in rows
            ]
