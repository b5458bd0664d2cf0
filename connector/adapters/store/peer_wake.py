"""Waking the other workers through the database: PostgreSQL ``LISTEN``/``NOTIFY``.

Only the worker holding the listener lock hears Push&Pull. When it is woken for our
connector it sends ``NOTIFY`` on a channel named after the connector; every other worker
``LISTEN``\\s there on a connection of its own and wakes its drain. Elsewhere (MariaDB,
SQLite) there is no such channel: the peers' safety poll covers them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from connector.errors import StoreError

__all__ = ["PeerWake"]

log = logging.getLogger(__name__)


class PeerWake:
    def __init__(self, engine: Engine, connector_id: str) -> None:
        self.engine = engine
        digest = hashlib.blake2b(connector_id.encode(), digest_size=8).hexdigest()
        self.channel = f"b24_wake_{digest}"

    @property
    def available(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def notify(self) -> None:
        if not self.available:
            return
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, 'event_offline')"), {"c": self.channel})

    def listen(
        self, on_wake: Callable[[], None], stop: threading.Event, poll_s: float = 1.0
    ) -> None:
        """Block until ``stop`` is set, calling ``on_wake`` for every notification."""
        if not self.available:
            return
        try:
            raw = self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise StoreError(f"LISTEN for peer wakes: {exc}", transient=True) from exc
        try:
            driver: Any = raw.driver_connection
            driver.autocommit = True
            driver.execute(f'LISTEN "{self.channel}"')
            while not stop.is_set():
                for _ in driver.notifies(timeout=poll_s, stop_after=1):
                    on_wake()
        except Exception as exc:  # the driver's own errors: the connection was lost
            raise StoreError(
                f"the LISTEN connection for peer wakes was lost: {type(exc).__name__}",
                transient=True,
            ) from exc
        finally:
            raw.invalidate()  # never return a LISTENing connection to the pool
