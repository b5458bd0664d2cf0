"""ID-window paging: the fast way to read a whole list from Bitrix24.

Instead of ``start=0, 50, 100…`` (each page recounts the whole table), every page asks
for ``filter[>ID]=<last seen ID>``, ``order[ID]=ASC`` and ``start=-1`` (no count). A page
shorter than 50 rows is the last one. Inside a ``batch`` the pages chain: page *k* takes
its lower bound from page *k-1* with ``$result[p<k-1>][49][ID]``, so one request reads up
to 50 pages (2,500 rows).

:class:`IdWindow` plans the parameters and the chained commands; :class:`IdCursor` takes
pages in order, keeps the last ID and detects loops (an ID that does not move forward),
which would otherwise page forever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome, result_ref
from connector.errors import RejectedError

__all__ = ["PAGE_SIZE", "IdCursor", "IdWindow", "page_rows", "row_id"]

PAGE_SIZE = 50


@dataclass(frozen=True)
class IdWindow:
    """How to page one list method by ID.

    ``params`` holds the caller's ``filter``/``select`` (and anything else the method
    takes); ``order`` and ``start`` are set here. ``items_key`` names the list inside the
    result for methods that wrap it (``crm.item.list`` → ``"items"``, with
    ``id_field="id"``).
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    id_field: str = "ID"
    items_key: str | None = None
    page_size: int = PAGE_SIZE

    def page_params(self, after: int | str) -> dict[str, Any]:
        """Parameters of the page that starts after ID ``after`` (an int or a reference)."""
        params = {k: v for k, v in self.params.items() if k not in ("order", "start")}
        flt = dict(params.get("filter") or {})
        flt[f">{self.id_field}"] = after
        params["filter"] = flt
        params["order"] = {self.id_field: "ASC"}
        params["start"] = -1
        select = params.get("select")
        if select and "*" not in select and self.id_field not in select:
            params["select"] = [*select, self.id_field]
        return params

    def chained_commands(self, after: int, pages: int = MAX_COMMANDS) -> list[Command]:
        """``pages`` (1..50) commands ``p0``…: each starts after the last ID of the one before."""
        if not 1 <= pages <= MAX_COMMANDS:
            raise ValueError(f"pages must be 1..{MAX_COMMANDS}")
        commands = [Command("p0", self.method, self.page_params(after))]
        last = self.page_size - 1
        for index in range(1, pages):
            path: list[str | int] = [self.items_key] if self.items_key else []
            ref = result_ref(f"p{index - 1}", *path, last, self.id_field)
            commands.append(Command(f"p{index}", self.method, self.page_params(ref)))
        return commands


def page_rows(result: Any, items_key: str | None = None) -> list[Mapping[str, Any]]:
    """The rows of one list answer: a list, ``{items_key: [...]}``, or a PHP-array dict."""
    if items_key is not None and isinstance(result, Mapping):
        result = result.get(items_key, [])
    if isinstance(result, Mapping):
        result = list(result.values())
    if not isinstance(result, list):
        raise RejectedError("list answer is not a list of rows", code="ERROR_UNEXPECTED_ANSWER")
    return [row for row in result if isinstance(row, Mapping)]


def row_id(row: Mapping[str, Any], id_field: str = "ID") -> int:
    """The row's ID as an int (Bitrix24 sends ``"12"`` as often as ``12``)."""
    value = row.get(id_field)
    if isinstance(value, bool):
        value = None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RejectedError(
            f"list row has no numeric {id_field}", code="ERROR_UNEXPECTED_ANSWER"
        ) from None


class IdCursor:
    """Walks an :class:`IdWindow`: remembers the last ID, knows when the list is done.

    Every accepted page must start after the previous last ID and go strictly up;
    otherwise :class:`~connector.errors.RejectedError` with code ``PAGING_LOOP`` is raised.
    """

    def __init__(self, window: IdWindow, after: int = 0) -> None:
        self.window = window
        self.last_id = after
        self.done = False
        self.pages = 0

    def accept(self, result: Any) -> list[Mapping[str, Any]]:
        """Take one page's result; return its rows; mark the cursor done on a short page."""
        if self.done:
            raise RejectedError(
                f"{self.window.method}: page after the last one",
                code="PAGING_LOOP",
                method=self.window.method,
            )
        rows = page_rows(result, self.window.items_key)
        previous = self.last_id
        for row in rows:
            current = row_id(row, self.window.id_field)
            if current <= previous:
                raise RejectedError(
                    f"{self.window.method}: paging loop: ID {current} after {previous}",
                    code="PAGING_LOOP",
                    method=self.window.method,
                )
            previous = current
        self.last_id = previous
        self.pages += 1
        if len(rows) < self.window.page_size:
            self.done = True
        return rows

    def accept_batch(self, outcomes: Sequence[CommandOutcome]) -> list[Mapping[str, Any]]:
        """Take the chained pages of one batch, in order, until a short page.

        An error on the first page is raised; an error on a later page ends this batch
        (the next one starts from :attr:`last_id`, where a lasting error surfaces as a
        first-page error). Pages after a short page are ignored: their ``$result``
        reference pointed past the end.
        """
        rows: list[Mapping[str, Any]] = []
        for index, outcome in enumerate(outcomes):
            if self.done:
                break
            if outcome.error is not None:
                if index == 0:
                    raise outcome.error
                break
            rows.extend(self.accept(outcome.result))
        return rows
