"""The offline event queue: the digest's §7.12 state machine and ``event.offline.*``.

A record is ``(ID, APP_ID, CONNECTOR_ID, MESSAGE_ID, EVENT_NAME, EVENT_DATA,
EVENT_ADDITIONAL, TIMESTAMP_X, PROCESS_ID, ERROR)``; ``PROCESS_ID == ""`` means free.

* :meth:`OfflineQueue.upsert` — a firing for one (app, connector) binding: merge into the
  free record with the same ``MESSAGE_ID`` (refreshing TIMESTAMP_X, EVENT_DATA and
  EVENT_ADDITIONAL, keeping ID) or insert a new record with ``ERROR=0``. Errored records
  are free too, so later firings merge into them and stay hidden; locked records never
  absorb firings.
* :meth:`OfflineQueue.fetch` — ``event.offline.get``: lock up to ``limit`` free records
  with ``ERROR=e`` under a fresh 32-character process id (one atomic step, so parallel
  callers get disjoint sets), return them, and with ``clear=1`` delete every record of
  that process. With ``process_id`` it re-reads that process's records, locking nothing.
* :meth:`OfflineQueue.clear`, :meth:`OfflineQueue.mark_error`, :meth:`OfflineQueue.list_page`
  — ``event.offline.clear`` / ``.error`` / ``.list``.
* :meth:`OfflineQueue.purge` — the housekeeping agent: locked records whose TIMESTAMP_X is
  older than 2,952,000 s are deleted (never released). It runs lazily on every queue
  operation, driven by the portal clock, so ``clock.advance`` is enough in tests.

Every method works on one partition ``(app_id, connector_id)``. The REST methods
(``offline_methods``) take the app from ``ctx.client_id`` and the connector from
``ctx.auth_connector`` (see ``event_access``). As in the rest module,
``process_id=""`` is not "missing": it addresses the *free* records of the partition.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.emulator.filter_ops import (
    Condition,
    matches,
    sort_rows,
)

if TYPE_CHECKING:
    from connector.emulator.portal_contract import PortalContract

PURGE_AGE = 2_952_000
"""Seconds after TIMESTAMP_X when the agent deletes a locked record (≈34 days)."""

DEFAULT_LIMIT = 50
PAGE_SIZE = 50
GET_FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
LIST_FIELDS = (*GET_FIELDS, "PROCESS_ID", "ERROR")
QUEUE_FILTER_OPS = ("", "=", ">", ">=", "<", "<=", "%")
_PID_ALPHABET = string.ascii_lowercase + string.digits
_LEADING_INT = re.compile(r"^\s*([+-]?\d+)")


def php_json(value: object) -> str:
    """``json_encode`` as PHP does it by default: compact, ASCII, ``/`` escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def message_id_for(event_name: str, event_data: object) -> str:
    """``md5(EVENT_NAME + "|" + json_encode(EVENT_DATA))`` (digest §12)."""
    return hashlib.md5(f"{event_name}|{php_json(event_data)}".encode()).hexdigest()


def php_int(value: object, default: int = 0) -> int:
    """PHP ``intval``: leading digits of a string, ``True`` → 1, junk → 0."""
    if value is None:
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = _LEADING_INT.match(str(value))
    return int(match.group(1)) if match else 0


def new_process_id() -> str:
    """A fresh random 32-character process id, like ``5xcvetmo5zm5li73qxnj8qu72e2qrxw8``."""
    return "".join(secrets.choice(_PID_ALPHABET) for _ in range(32))


@dataclass
class QueueRecord:
    """One row of ``b_rest_event_offline``."""

    id: int
    app_id: str
    connector_id: str
    message_id: str
    event_name: str
    event_data: Any
    event_additional: dict[str, str]
    timestamp: int
    process_id: str = ""
    error: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.message_id, self.app_id, self.connector_id)

    def value(self, name: str) -> Any:
        """The value of a filter/order field (``ID``, ``TIMESTAMP_X``, …)."""
        return {
            "ID": self.id,
            "TIMESTAMP_X": self.timestamp,
            "EVENT_NAME": self.event_name,
            "MESSAGE_ID": self.message_id,
            "PROCESS_ID": self.process_id,
            "ERROR": self.error,
        }[name]


def _kind(name: str) -> str:
    return {"ID": "int", "ERROR": "int", "TIMESTAMP_X": "date"}.get(name, "str")


def _passes(conds: list[Condition], record: QueueRecord) -> bool:
    return matches(conds, lambda name: [record.value(name)], _kind)


@dataclass
class FetchResult:
    """What ``event.offline.get`` answers: ``process_id`` (or None) and the records."""

    process_id: str | None
    events: list[QueueRecord] = field(default_factory=list)


class OfflineQueue:
    """All offline queue records of one portal (every app, every connector)."""

    def __init__(self, portal: PortalContract) -> None:
        self.portal = portal
        self._records: dict[int, QueueRecord] = {}
        self._free: dict[tuple[str, str, str], int] = {}
        self._next_id = 1
        self._lock = threading.RLock()
        self._last_purge = float("-inf")

    # ---- inspection (tests, control surface) -------------------------------------
    def records(
        self, app_id: str | None = None, connector_id: str | None = None
    ) -> list[QueueRecord]:
        """Every record (or one app's / one partition's), by ID."""
        with self._lock:
            return [
                r
                for _, r in sorted(self._records.items())
                if (app_id is None or r.app_id == app_id)
                and (connector_id is None or r.connector_id == connector_id)
            ]

    def render(self, record: QueueRecord, *, full: bool = False) -> dict[str, Any]:
        """The JSON of a record: ``event.offline.get`` shape, or ``.list`` with ``full``."""
        row: dict[str, Any] = {
            "ID": str(record.id),
            "TIMESTAMP_X": self.portal.clock.iso(record.timestamp),
            "EVENT_NAME": record.event_name,
            "EVENT_DATA": record.event_data,
            "EVENT_ADDITIONAL": dict(record.event_additional),
            "MESSAGE_ID": record.message_id,
        }
        if full:
            row["PROCESS_ID"] = record.process_id
            row["ERROR"] = str(record.error)
        return row

    # ---- index bookkeeping -------------------------------------------------------
    def _partition(self, app_id: str, connector_id: str) -> list[QueueRecord]:
        return [
            r
            for _, r in sorted(self._records.items())
            if r.app_id == app_id and r.connector_id == connector_id
        ]

    def _delete(self, record: QueueRecord) -> None:
        self._records.pop(record.id, None)
        if self._free.get(record.key) == record.id:
            del self._free[record.key]

    def _set_free(self, record: QueueRecord) -> None:
        """Detach a record (``PROCESS_ID=''``); merge if a free twin already exists."""
        record.process_id = ""
        twin_id = self._free.get(record.key)
        twin = self._records.get(twin_id) if twin_id is not None else None
        if twin is not None and twin is not record:
            # Technical leftover (markError step 3): keep one record per key, with the
            # latest data and the error flag if either had it.
            keep, drop = (twin, record) if twin.id < record.id else (record, twin)
            newest = max((twin, record), key=lambda r: (r.timestamp, r.id))
            keep.timestamp, keep.event_data = newest.timestamp, newest.event_data
            keep.event_additional = newest.event_additional
            keep.error = max(twin.error, record.error)
            self._records.pop(drop.id, None)
            self._free[keep.key] = keep.id
            return
        self._free[record.key] = record.id

    def _lock_record(self, record: QueueRecord, process_id: str) -> None:
        if self._free.get(record.key) == record.id:
            del self._free[record.key]
        record.process_id = process_id

    # ---- the state machine -------------------------------------------------------
    def upsert(
        self, app_id: str, connector_id: str, event_name: str, event_data: Any, user_id: int | str
    ) -> QueueRecord:
        """Queue one firing for the (app, connector) partition; returns the record."""
        with self._lock:
            self.purge()
            name = event_name.upper()
            mid = message_id_for(name, event_data)
            now = int(self.portal.clock.now())
            additional = {"user_id": str(user_id)}
            existing_id = self._free.get((mid, app_id, connector_id))
            existing = self._records.get(existing_id) if existing_id is not None else None
            if existing is not None:
                existing.timestamp = now
                existing.event_data = event_data
                existing.event_additional = additional
                return existing
            record = QueueRecord(
                self._next_id, app_id, connector_id, mid, name, event_data, additional, now
            )
            self._next_id += 1
            self._records[record.id] = record
            self._free[record.key] = record.id
            return record

    def fetch(
        self,
        app_id: str,
        connector_id: str,
        *,
        conditions: list[Condition] | None = None,
        order: list[tuple[str, bool]] | None = None,
        limit: int = DEFAULT_LIMIT,
        clear: bool = True,
        process_id: str | None = None,
        error: bool = False,
    ) -> FetchResult:
        """``event.offline.get`` on validated arguments (§7.5, §7.6, §7.12)."""
        conds = conditions or []
        sort = order or [("TIMESTAMP_X", False)]
        err = 1 if error else 0
        with self._lock:
            self.purge()
            # Ties in the sort (records changed in the same second) come newest first:
            # the rest module leaves their order to the database, and a consumer that
            # takes delivery order for change order must not pass by luck.
            part = sorted(self._partition(app_id, connector_id), key=lambda r: -r.id)
            return_pid = not clear
            if process_id is None:
                pid = new_process_id()
                free = [
                    r for r in part if r.process_id == "" and r.error == err and _passes(conds, r)
                ]
                for record in sort_rows(free, sort, QueueRecord.value, _kind)[:limit]:
                    self._lock_record(record, pid)
            else:
                pid = process_id
                return_pid = True
            mine = [r for r in part if r.process_id == pid and r.error == err and _passes(conds, r)]
            events = sort_rows(mine, sort, QueueRecord.value, _kind)[:limit]
            if clear and events:
                self._clear(app_id, connector_id, pid)
            return FetchResult(pid if return_pid else None, events)

    def _clear(
        self,
        app_id: str,
        connector_id: str,
        process_id: str,
        ids: Iterable[int] | None = None,
        message_ids: Iterable[str] | None = None,
    ) -> int:
        id_set = None if ids is None else set(ids)
        mid_set = None if message_ids is None else set(message_ids)
        doomed = [
            r
            for r in self._partition(app_id, connector_id)
            if r.process_id == process_id
            and (id_set is None or r.id in id_set)
            and (mid_set is None or r.message_id in mid_set)
        ]
        for record in doomed:
            self._delete(record)
        return len(doomed)

    def clear(
        self,
        app_id: str,
        connector_id: str,
        process_id: str,
        *,
        ids: Iterable[int] | None = None,
        message_ids: Iterable[str] | None = None,
    ) -> int:
        """``event.offline.clear``: delete the process's records (all, or by ID/MESSAGE_ID).

        ``message_ids`` wins over ``ids``; an empty list means "no restriction". Returns
        how many records went (the REST answer is ``true`` regardless).
        """
        with self._lock:
            self.purge()
            mids = list(message_ids) if message_ids is not None else None
            id_list = list(ids) if ids is not None and mids is None else None
            return self._clear(app_id, connector_id, process_id, id_list or None, mids or None)

    def mark_error(
        self, app_id: str, connector_id: str, process_id: str, message_ids: Iterable[str]
    ) -> None:
        """``event.offline.error`` (§7.8): fold other copies in, flag and detach ours."""
        mids = {str(m).strip() for m in message_ids}
        if not mids:
            return
        with self._lock:
            self.purge()
            part = [r for r in self._partition(app_id, connector_id) if r.message_id in mids]
            for record in part:  # step 1: other ERROR=0 copies, free or locked elsewhere
                if record.error == 0 and record.process_id != process_id:
                    self._delete(record)
            for record in part:  # step 2 (+3 in _set_free): flag and detach ours
                if record.id in self._records and record.process_id == process_id:
                    record.error = 1
                    self._set_free(record)

    def list_page(
        self,
        app_id: str,
        connector_id: str,
        *,
        conditions: list[Condition] | None = None,
        order: list[tuple[str, bool]] | None = None,
        start: int = 0,
    ) -> tuple[list[QueueRecord], int]:
        """``event.offline.list``: one page of 50 and the total, read-only."""
        with self._lock:
            self.purge()
            conds = conditions or []
            rows = [r for r in self._partition(app_id, connector_id) if _passes(conds, r)]
            rows = sort_rows(rows, order or [("ID", False)], QueueRecord.value, _kind)
            offset = max(0, start)
            return rows[offset : offset + PAGE_SIZE], len(rows)

    def purge(self, *, force: bool = False) -> int:
        """Delete locked records older than :data:`PURGE_AGE`; returns how many."""
        now = self.portal.clock.now()
        with self._lock:
            if not force and now - self._last_purge < 1.0:
                return 0
            self._last_purge = now
            doomed = [
                r
                for r in self._records.values()
                if r.process_id != "" and now - r.timestamp > PURGE_AGE
            ]
            for record in doomed:
                self._delete(record)
            return len(doomed)
