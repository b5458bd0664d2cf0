"""A worker lease held for the length of a block: register, renew, retire.

``run`` renews its lease from its own task (``Worker._keep_lease``); the short-lived
verbs that reserve queue records (``sync --once``) hold one through
:func:`holding_lease`, so a ``run`` worker on the same database never takes their live
reservations for a dead worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError

from connector.adapters.store.workers import WorkerRegistry

__all__ = ["holding_lease"]

log = logging.getLogger(__name__)


async def _renew(registry: WorkerRegistry) -> None:
    while True:
        await asyncio.sleep(registry.lease_s / 3)
        try:
            await asyncio.to_thread(registry.heartbeat)
        except SQLAlchemyError as exc:  # the next renewal may work; the lease is long
            log.warning("lease not renewed: %s", exc)


@asynccontextmanager
async def holding_lease(registry: WorkerRegistry) -> AsyncIterator[WorkerRegistry]:
    await asyncio.to_thread(registry.register)
    renewing = asyncio.create_task(_renew(registry), name="lease")
    try:
        yield registry
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(SQLAlchemyError):
            await asyncio.to_thread(registry.retire)
