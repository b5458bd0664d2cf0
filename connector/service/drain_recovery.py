"""Finishing what a crash left half done (``Drainer`` mixes it in).

:meth:`Recovery.resume` goes through every unfinished journal entry of this worker (and
of workers whose lease expired, adopted by compare-and-set): an ``applied`` one is only
cleared; a ``reserved`` one is re-read with ``event.offline.get process_id=… clear=0``
(``error=1`` too: a released held record keeps its flag while locked) and processed
again — applying the same state twice changes nothing. :meth:`Recovery.recover_orphans`
adopts records the portal holds locked for us under a ``process_id`` no journal names
(the answer of a ``get`` was lost), after a short grace when live peers may be between
their ``get`` and their journal write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connector.adapters.store.journal import APPLIED, Journal, JournalEntry
from connector.service.drain_types import DrainStats, PortalCalls

__all__ = ["Recovery"]

log = logging.getLogger("connector.service.drainer")


class Recovery:
    """Resume and orphan adoption; the state lives on the drainer."""

    portal: PortalCalls
    journal: Journal
    adopt_orphans: bool
    peers_alive: Callable[[], bool] | None
    orphan_grace: float
    _unsent: tuple[str, list[int], list[str]] | None
    _ahead: tuple[str, list[Any]] | None

    async def _finish(
        self, process_id: str, record_ids: Sequence[int], flagged: Sequence[str]
    ) -> None:
        raise NotImplementedError

    async def _process(
        self, process_id: str, events: list[Any], *, fold: bool = False, ahead: bool = False
    ) -> DrainStats:
        raise NotImplementedError

    async def resume(self) -> DrainStats:
        """Finish every process the journal knows, then adopt orphaned locks."""
        total = DrainStats()
        entries = await asyncio.to_thread(self.journal.unfinished)
        for entry in entries:
            if not await asyncio.to_thread(self.journal.adopt, entry):
                continue  # a live peer adopted it first
            if entry.worker and entry.worker != self.journal.worker:
                log.warning("adopting process %s of dead worker %s", entry.process_id, entry.worker)
            else:
                log.info("resuming process %s (%s)", entry.process_id, entry.state)
            total.resumed += 1
            total.add(await self._resume_entry(entry))
        if self.adopt_orphans:
            total.add(await self.recover_orphans())
        return total

    async def _resume_entry(self, entry: JournalEntry) -> DrainStats:
        if self._unsent is not None and self._unsent[0] == entry.process_id:
            self._unsent = None  # finished here and now
        if self._ahead is not None and self._ahead[0] == entry.process_id:
            self._ahead = None  # reserved ahead: seen through here and now
        if entry.state == APPLIED:
            await self._finish(entry.process_id, entry.record_ids, entry.flagged)
            return DrainStats()
        return await self._resume_reserved(entry.process_id)

    async def recover_orphans(self) -> DrainStats:
        """Finish every process the portal holds locked for us that no journal row names."""
        total = DrainStats()
        pids = await self._orphans()
        if pids and self.peers_alive is not None and self.peers_alive():
            # A live peer may be between its get and its journal write: give it a moment.
            await asyncio.sleep(self.orphan_grace)
            known = await asyncio.to_thread(self.journal.known, pids)
            pids = [p for p in pids if p not in known]
        for pid in pids:
            if not await asyncio.to_thread(self.journal.claim, pid):
                continue  # a peer claimed it
            log.warning("adopting process %s: locked in the portal, unknown here", pid)
            total.resumed += 1
            total.add(await self._resume_reserved(pid))
        return total

    async def _resume_reserved(self, process_id: str) -> DrainStats:
        events: list[Any] = []
        for error in (0, 1):  # a released held record keeps ERROR=1 while it is locked
            answer = await self.portal.call(
                "event.offline.get", {"process_id": process_id, "clear": 0, "error": error}
            )
            result = answer.result if isinstance(answer.result, Mapping) else {}
            events = list(result.get("events") or [])
            if events:
                break
        if not events:
            await asyncio.to_thread(self.journal.reserve, process_id, [], [])
            await asyncio.to_thread(self.journal.mark_cleared, process_id)
            return DrainStats()
        return await self._process(process_id, events)

    async def _orphans(self) -> list[str]:
        """Process ids holding locked records of this connector that the journal lacks."""
        pids: list[str] = []
        start = 0
        # PROCESS_ID > '' selects the locked records: the rest module hands string
        # filters to SQL as plain comparisons, and every process id sorts after ''.
        # Filtering there keeps a start-up after a long outage from paging the backlog.
        while True:
            answer = await self.portal.call(
                "event.offline.list",
                {"filter": {">PROCESS_ID": ""}, "order": {"ID": "ASC"}, "start": start},
            )
            rows = answer.result if isinstance(answer.result, list) else []
            for row in rows:
                pid = row.get("PROCESS_ID") if isinstance(row, Mapping) else None
                if isinstance(pid, str) and pid and pid not in pids:
                    pids.append(pid)
            nxt = getattr(answer, "next", None)
            if not rows or not isinstance(nxt, int):
                break
            start = nxt
        known = await asyncio.to_thread(self.journal.known, pids)
        return [p for p in pids if p not in known]
