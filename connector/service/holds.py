"""Records held in the portal (``ERROR=1``): released when nothing holds them any more.

A conflict or a refused value flags its queue record with ``event.offline.error``; every
later firing for that entity merges into the flagged record and waits. A hold is never
forever (DESIGN, invariants):

* :meth:`Holds.retry_errors` — records refused for a bad value: when the portal's record
  has changed since (the operator fixed it there), or on ``errors retry``, the held queue
  record is re-read with ``event.offline.get error=1`` and goes through the ordinary drain
  (applied and cleared, or flagged again with the new reason). A record whose queue
  record is gone is applied straight from the portal's state.
* :meth:`Holds.release_resolved` — conflicts an operator resolved (or ignored): their held
  records are re-read and drained the same way, then the conflict is marked released.
* :meth:`Holds.sweep` — ``event.offline.list filter[ERROR]=1``: a held record that no open
  conflict or record error here accounts for (a resolution interrupted by a crash, a
  record held by an older version) is released.

Re-reading through the drain, instead of clearing blindly, is what the digest (§7.9)
asks for: portal edits made while the record was held were folded into it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connector.adapters.store.conflict_rows import (
    mark_conflicts_released,
    open_conflict_message_ids,
    unreleased_closed_conflicts,
)
from connector.adapters.store.database import write_transaction
from connector.adapters.store.record_errors import (
    mark_errors_released,
    open_error_message_ids,
    open_errors,
    unreleased_resolved_errors,
)
from connector.adapters.store.record_forms import json_safe_deep
from connector.core.batch_commands import Command
from connector.service.drainer import Drainer, DrainStats

log = logging.getLogger(__name__)


class Holds:
    def __init__(self, drainer: Drainer) -> None:
        self.drainer = drainer
        self.engine = drainer.engine

    async def settle(self) -> DrainStats:
        """After a drain: release what resolutions freed, retry refusals fixed in the portal.

        Costs nothing when no conflict was resolved and no record error is open.
        """
        stats = await self.release_resolved()
        if await asyncio.to_thread(self._open_errors, None):
            stats.add(await self.retry_errors())
        stats.add(await self.release_synced_errors())
        return stats

    async def release_synced_errors(self) -> DrainStats:
        """Refused records that synced since (a later event of another kind brought them):
        their held queue record is released too."""
        with self.engine.connect() as conn:
            rows = unreleased_resolved_errors(conn)
        if not rows:
            return DrainStats()
        stats, _ = await self.release([r[1] for r in rows if r[1]])
        with write_transaction(self.engine) as conn:
            mark_errors_released(conn, [r[0] for r in rows], datetime.now(UTC))
        return stats

    # --- queue side ------------------------------------------------------------------

    async def release(self, message_ids: Sequence[str]) -> tuple[DrainStats, set[str]]:
        """Re-read the held records of ``message_ids`` (``error=1``) and drain them.

        Returns the drain totals and the MESSAGE_IDs that had a held record.
        """
        total = DrainStats()
        found: set[str] = set()
        mids = list(dict.fromkeys(m for m in message_ids if m))
        for start in range(0, len(mids), 50):
            part = mids[start : start + 50]
            commands = [
                Command(
                    f"h{n}",
                    "event.offline.get",
                    {"error": 1, "clear": 0, "filter": {"=MESSAGE_ID": mid}},
                )
                for n, mid in enumerate(part)
            ]
            outcomes = await self.drainer.portal.batch(commands)
            for command, mid in zip(commands, part, strict=True):
                outcome = outcomes[command.key]
                if outcome.error is not None:
                    raise outcome.error
                result = outcome.result if isinstance(outcome.result, Mapping) else {}
                events = list(result.get("events") or [])
                pid = result.get("process_id")
                if events and isinstance(pid, str) and pid:
                    found.add(mid)
                    log.info("released held queue record %s (process %s)", mid, pid)
                    total.add(await self.drainer._process(pid, events))
        return total, found

    async def sweep(self) -> DrainStats:
        """Release every held record that nothing here accounts for any more."""
        held = await self._held_in_portal()
        if not held:
            return DrainStats()
        open_mids = await asyncio.to_thread(self._open_message_ids)
        orphans = [mid for mid in held if mid not in open_mids]
        if not orphans:
            return DrainStats()
        log.warning("releasing %d held queue records no open conflict holds", len(orphans))
        stats, _ = await self.release(orphans)
        return stats

    async def _held_in_portal(self) -> list[str]:
        mids: list[str] = []
        start = 0
        while True:
            answer = await self.drainer.portal.call(
                "event.offline.list",
                {"filter": {"ERROR": 1}, "order": {"ID": "ASC"}, "start": start},
            )
            rows = answer.result if isinstance(answer.result, list) else []
            for row in rows:
                mid = row.get("MESSAGE_ID") if isinstance(row, Mapping) else None
                if isinstance(mid, str) and mid and mid not in mids:
                    mids.append(mid)
            nxt = getattr(answer, "next", None)
            if not rows or not isinstance(nxt, int):
                return mids
            start = nxt

    def _open_message_ids(self) -> set[str]:
        """MESSAGE_IDs held on purpose: open conflicts and open record errors."""
        with self.engine.connect() as conn:
            return open_conflict_message_ids(conn) | open_error_message_ids(conn)

    # --- resolved conflicts ------------------------------------------------------------

    async def release_resolved(self) -> DrainStats:
        """Drain the held records of conflicts that are closed but not yet released."""
        with self.engine.connect() as conn:
            rows = unreleased_closed_conflicts(conn)
        if not rows:
            return DrainStats()
        mids = [m for r in rows for m in [*(r[1] or []), r[2]] if isinstance(m, str) and m]
        stats, _ = await self.release(mids)
        with write_transaction(self.engine) as conn:
            mark_conflicts_released(conn, [r[0] for r in rows], datetime.now(UTC))
        return stats

    # --- refused records -----------------------------------------------------------------

    async def retry_errors(
        self, error_ids: Sequence[int] | None = None, *, force: bool = False
    ) -> DrainStats:
        """Retry open record errors whose portal record changed (all of them with ``force``;
        only ``error_ids`` when given)."""
        errors = await asyncio.to_thread(self._open_errors, error_ids)
        if not errors:
            return DrainStats()
        states = await self._current_states(errors)
        due = [
            e
            for e in errors
            if force
            or (
                e["b24_id"] is not None
                and json_safe_deep(states.get((e["entity"], e["b24_id"]))) != e["payload"]
            )
        ]
        if not due:
            return DrainStats()
        total, found = await self.release([e["message_id"] for e in due if e["message_id"]])
        direct = [e for e in due if e["message_id"] not in found and e["b24_id"] is not None]
        if direct:  # nothing held in the portal any more: apply its state as it is now
            total.add(await asyncio.to_thread(self._apply_states, direct, states))
        return total

    def _open_errors(self, error_ids: Sequence[int] | None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return open_errors(conn, error_ids)

    async def _current_states(
        self, errors: Sequence[Mapping[str, Any]]
    ) -> dict[tuple[str, int], Mapping[str, Any]]:
        wanted: dict[str, list[int]] = {}
        for e in errors:
            if e["b24_id"] is not None and self.drainer.mappings.get(e["entity"]) is not None:
                wanted.setdefault(e["entity"], []).append(int(e["b24_id"]))
        if not wanted:
            return {}
        from connector.core.queue_records import DrainPlan, QueueRecord

        plan = DrainPlan(
            records=[
                QueueRecord(0, "", "", entity, "UPDATE", b24_id, None, "")
                for entity, ids in wanted.items()
                for b24_id in ids
            ]
        )
        return dict(await self.drainer._fetch(plan))

    def _apply_states(
        self,
        errors: Sequence[Mapping[str, Any]],
        states: Mapping[tuple[str, int], Mapping[str, Any]],
    ) -> DrainStats:
        stats = DrainStats()
        now = datetime.now(UTC)
        writer = self.drainer.writer
        with write_transaction(self.engine) as conn:
            for e in errors:
                m = self.drainer.mappings.get(e["entity"])
                if m is None:
                    continue
                state = states.get((e["entity"], int(e["b24_id"])))
                [outcome] = writer.apply_many(conn, m, [(int(e["b24_id"]), state, None)], now=now)
                stats.records += 1
                if outcome.error is not None:
                    writer.record_error(
                        conn,
                        outcome.error,
                        b24_id=int(e["b24_id"]),
                        message_id=e["message_id"],
                        payload=state,
                        now=now,
                    )
                    stats.bad += 1
                else:
                    writer.resolve_errors(conn, m.entity, [int(e["b24_id"])], now)
                    if outcome.action in ("inserted", "updated", "deleted", "unchanged"):
                        setattr(stats, outcome.action, getattr(stats, outcome.action) + 1)
        return stats
