"""The worker's upkeep beside the two sync directions (``Worker`` mixes it in).

* housekeeping: prune the journal and the outbox on the keeps of :class:`Keep`
  (``adapters/store/housekeeping.py``), at start-up and every ``Keep.every`` seconds;
* the reconcile of a gap the start-up scheduled (bindings found missing), in the
  background (``service/reconcile.py``);
* the queue depth for ``/metrics``: one ``event.offline.list`` a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine

from connector.adapters.store.housekeeping import JOURNAL_KEEP, OUTBOX_KEEP, prune
from connector.core.mapping_model import MappingSet
from connector.errors import (
    AuthRevokedError,
    ConnectorError,
    FatalPortalError,
    PortalError,
    RetriableError,
    StoreError,
)
from connector.service.drain_types import PortalCalls
from connector.service.health import Metrics
from connector.service.reconcile import ReconcilePortal, run_pending

__all__ = ["Keep", "UpkeepTasks", "WorkerPortal"]

log = logging.getLogger("connector.worker")


class WorkerPortal(PortalCalls, ReconcilePortal, Protocol):
    """What the worker needs from the REST client: calls, batches and ID-window pages
    (the reconcile after missing bindings)."""


@dataclass(frozen=True)
class Keep:
    """How long ``run`` keeps its own rows (``adapters/store/housekeeping``), and how
    often it prunes (``B24_JOURNAL_KEEP_HOURS``, ``B24_OUTBOX_KEEP_DAYS``,
    ``B24_PRUNE_INTERVAL``)."""

    journal: timedelta = JOURNAL_KEEP
    outbox: timedelta = OUTBOX_KEEP
    every: float = 3600.0


class UpkeepTasks:
    """Housekeeping, scheduled reconciles, the queue-depth gauge; state on the worker."""

    client: WorkerPortal
    engine: Engine
    mappings: MappingSet
    connector_id: str
    metrics: Metrics
    keep: Keep
    stopping: asyncio.Event

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

    async def _reconcile_gaps(self) -> None:
        """Scheduled reconciles (bindings found missing), after start-up, beside the drain
        and the push: a long one delays nothing, a failed one stays scheduled."""
        try:
            await run_pending(self.client, self.engine, self.mappings, self.connector_id)
        except (RetriableError, FatalPortalError, AuthRevokedError, StoreError):
            raise  # the supervisor decides: run it again, or stop the worker
        except ConnectorError as exc:  # a record or an answer it cannot use: say so, go on
            log.error("a scheduled reconcile failed and stays scheduled: %s", exc)
