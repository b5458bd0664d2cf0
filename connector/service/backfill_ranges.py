"""Backfill reading several ID ranges at once, so the portal's latency overlaps.

One ID-window chain has one request in flight: with a portal that takes a second per
50-page batch, the rate bucket (2 requests/s) sits half idle. Here the span up to the
highest ID is split (``core/id_ranges.py``) and each range is its own chain, read
concurrently; the rate governor still spaces every request, so the bucket is never
exceeded. Windows are applied one at a time, in the order they arrive (each in its own
transaction, as in the single chain), and the cursor records the contiguous prefix, so
a crash resumes where every ID below is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES
from connector.core.id_ranges import IdRange, RangeProgress
from connector.core.id_window import IdWindow, row_id
from connector.core.mapping_model import EntityMapping

__all__ = ["read_ranges"]


class _Pages(Protocol):
    def iter_pages(
        self, window: IdWindow, *, after: int = 0, batched: bool = True, pages_per_request: int = 50
    ) -> AsyncIterator[list[Mapping[str, Any]]]: ...


class _Stats(Protocol):
    last_id: int

    def merge(self, window: Any) -> None: ...


class _Progress(Protocol):
    def window_applied(self, entity: str, stats: Any) -> None: ...


class _Host(Protocol):
    """What is read of the ``Backfiller`` (``service/backfill.py``)."""

    @property
    def portal(self) -> _Pages: ...
    @property
    def pages_per_request(self) -> int: ...
    @property
    def now(self) -> Callable[[], datetime]: ...
    @property
    def checkpoint(self) -> Callable[[str], None]: ...

    @property
    def window(self) -> _Window: ...


class _Window(Protocol):
    def apply(
        self,
        mapping: EntityMapping,
        rows: Sequence[Mapping[str, Any]],
        read_at: datetime,
        *,
        covers: tuple[int, int] | None = None,
        cursor: str | None = None,
        cursor_to: int | None = None,
    ) -> Any: ...


_Item = tuple[int, list[Mapping[str, Any]] | BaseException | None, datetime]


async def read_ranges(
    backfiller: _Host,
    mapping: EntityMapping,
    spans: list[IdRange],
    stats: _Stats,
    progress: _Progress | None,
) -> None:
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=len(spans))

    async def read(index: int, span: IdRange) -> None:
        window = IdWindow(
            f"{mapping.entity}.list",
            {"select": [*mapping.portal_codes(), *ORIGIN_CODES], "filter": {"<=ID": span.hi}},
        )
        pages = backfiller.portal.iter_pages(
            window, after=span.lo, batched=True, pages_per_request=backfiller.pages_per_request
        )
        try:
            while True:
                read_at = backfiller.now()  # before the request: the read is this fresh
                try:
                    rows = await anext(pages)
                except StopAsyncIteration:
                    await queue.put((index, None, read_at))
                    return
                await queue.put((index, rows, read_at))
                if row_id(rows[-1]) >= span.hi:  # the range's last ID: no request to find
                    await queue.put((index, None, read_at))  # an empty page after it
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the applier, which raises it
            await queue.put((index, exc, backfiller.now()))
        finally:
            closer = getattr(pages, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    state = RangeProgress(spans)
    covered = [span.lo for span in spans]  # each range: every ID up to here was seen
    cursor = f"backfill:{mapping.entity}"
    readers = [
        asyncio.create_task(read(i, s), name=f"backfill-range-{i}") for i, s in enumerate(spans)
    ]
    open_readers = len(readers)
    try:
        while open_readers:
            index, rows, read_at = await queue.get()
            if isinstance(rows, BaseException):
                raise rows
            if rows is None:  # the range's end: what its reads did not return is gone
                open_readers -= 1
                tail = (covered[index], spans[index].hi)
                covered[index] = spans[index].hi
                if tail[1] > tail[0]:
                    done = await asyncio.to_thread(
                        backfiller.window.apply, mapping, [], read_at, covers=tail
                    )
                    stats.merge(done)
                state.finished(index)
                continue
            backfiller.checkpoint("after_read")
            state.applied(index, row_id(rows[-1]))
            span = (covered[index], row_id(rows[-1]))
            covered[index] = span[1]
            done = await asyncio.to_thread(
                backfiller.window.apply,
                mapping,
                rows,
                read_at,
                covers=span,
                cursor=cursor,
                cursor_to=state.prefix(),
            )
            stats.merge(done)
            backfiller.checkpoint("after_commit")
            if progress is not None:
                progress.window_applied(mapping.entity, stats)
        stats.last_id = max(stats.last_id, state.prefix())
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
