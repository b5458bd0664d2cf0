"""The tail of a backfill or a reconcile: the links above every ID the reads covered.

After the last window, a live link whose ID lies above what the reads saw belongs either
to a record deleted in the portal (at the top of the ID range, so no window's span held
it) or to a record created after the highest-ID probe, whose link a drain wrote
meanwhile. Telling the two apart by the link's ``updated_at`` alone trusts the clock of
every host that wrote links: a worker whose clock runs behind makes a live record look
older than the probe.

So the candidates are read back first: ``crm.<entity>.list`` with ``filter[@ID]`` and
``select[]=ID``, 50 IDs a request. Only the IDs that read does not return go to the
delete path (``WindowApplier.apply(gone_among=…)``), and still only when their link is
older than the probe (a live event wins, as in every window). With no candidates, the
usual case, this costs no request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from connector.core.id_window import PAGE_SIZE, page_rows, row_id
from connector.core.mapping_model import EntityMapping
from connector.service.backfill_window import Covers, EntityStats, WindowApplier

__all__ = ["NO_ID_ABOVE", "apply_tail"]

NO_ID_ABOVE = 2**62
"""An upper bound past every portal ID (the tail of what the reads covered)."""


class _Answer(Protocol):
    @property
    def result(self) -> Any: ...


class TailPortal(Protocol):
    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...


async def live_ids(portal: TailPortal, mapping: EntityMapping, ids: list[int]) -> set[int]:
    """Which of ``ids`` the portal still has (one ID-only request per 50)."""
    found: set[int] = set()
    for start in range(0, len(ids), PAGE_SIZE):
        answer: _Answer = await portal.call(
            f"{mapping.entity}.list",
            {
                "filter": {"@ID": ids[start : start + PAGE_SIZE]},
                "select": ["ID"],
                "order": {"ID": "ASC"},
                "start": -1,
            },
        )
        found.update(row_id(r) for r in page_rows(answer.result))
    return found


async def apply_tail(
    portal: TailPortal,
    window: WindowApplier,
    mapping: EntityMapping,
    covered: int,
    probed_at: datetime,
) -> EntityStats:
    """Mark the links above ``covered`` whose portal record a read confirms gone;
    ``probed_at`` is a time before the highest-ID probe."""
    tail: Covers = (covered, NO_ID_ABOVE)
    candidates = await asyncio.to_thread(window.gone_candidates, mapping.entity, tail)
    if not candidates:
        return EntityStats(mapping.entity)
    live = await live_ids(portal, mapping, candidates)
    gone = [b24_id for b24_id in candidates if b24_id not in live]
    return await asyncio.to_thread(
        window.apply, mapping, [], probed_at, covers=tail, present=live, gone_among=gone
    )
