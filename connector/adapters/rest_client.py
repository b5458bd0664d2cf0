"""The Bitrix24 REST client: one injected ``httpx.AsyncClient``, every rule of the road.

* **auth_connector on every call**, no exception — CRM writes, reads, ``event.*`` and
  ``batch`` (and inside each batch command) — so the portal never echoes our own writes
  back into our offline queue (digest §7.3, A2). The access token is added by the
  ``auth`` flow (:class:`~connector.adapters.oauth_flow.OAuthFlow`).
* Parameters go as a PHP-bracket form body (POST), so no token or data sits in a URL.
* Every answer is validated, including errors inside HTTP 200 bodies, and mapped into
  the error tree (:mod:`connector.core.portal_answers`).
* Retriable errors are retried with tenacity: exponential backoff with jitter, capped;
  a wait the server dictates (``Retry-After``, ``operating_reset_at``) is honoured.
* Before each request the rate governor books a slot (``batch`` is billed as ``batch``).
* :meth:`RestClient.batch` splits any number of commands into ≤50-command batches;
  :meth:`RestClient.iter_pages` reads a whole list by ID window, 50 pages per request.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from connector.adapters.clocks import SystemClock
from connector.core.batch_commands import (
    MAX_COMMANDS,
    Command,
    CommandOutcome,
    build_batch,
    chunked,
    split_batch_result,
)
from connector.core.client_clock import Clock
from connector.core.id_window import IdCursor, IdWindow
from connector.core.php_query import build_query
from connector.core.portal_answers import as_int, classify, json_body
from connector.core.redaction import redact_text
from connector.errors import AmbiguousError, PortalError, RetriableError

__all__ = ["Answer", "Governor", "RestClient", "RetryPolicy"]

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"


class Governor(Protocol):
    """The rate governor as the client sees it (``rate_governor.RateGovernor``)."""

    async def acquire(self, method: str) -> None: ...

    def observe(self, method: str, body: Any) -> None: ...

    async def on_error(self, method: str, error: PortalError) -> None: ...

    def known_reset_at(self, method: str) -> float | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a retriable error.

    Attempt *n* (1-based) waits ``initial_s·2^(n-1)`` capped at ``max_backoff_s``, plus up
    to ``jitter_s`` of random jitter; a server-dictated wait replaces that, capped at
    ``max_server_wait_s``.
    """

    attempts: int = 6
    initial_s: float = 1.0
    max_backoff_s: float = 60.0
    jitter_s: float = 1.0
    max_server_wait_s: float = 900.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff_s, self.initial_s * 2.0 ** max(0, attempt - 1))
        return base + rng.uniform(0, self.jitter_s)

    def wait_after(self, error: BaseException | None, attempt: int, rng: random.Random) -> float:
        if isinstance(error, RetriableError) and error.retry_after is not None:
            return min(error.retry_after, self.max_server_wait_s)
        return self.backoff(attempt, rng)


@dataclass(frozen=True)
class Answer:
    """A successful answer: ``result`` plus the list envelope and ``time`` block."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: Mapping[str, Any] | None = None


class RestClient:
    """Calls one portal's REST API. ``endpoint`` is the REST base, ``https://x/rest/``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        *,
        connector_id: str,
        auth: httpx.Auth | None = None,
        governor: Governor | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        observer: Callable[[str, str], None] | None = None,
    ) -> None:
        if not connector_id:
            raise ValueError("connector_id is required: every call carries auth_connector")
        self.http = http
        self.endpoint = endpoint.rstrip("/") + "/"
        self.connector_id = connector_id
        self.auth = auth
        self.governor = governor
        self.clock: Clock = clock or SystemClock()
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.requests_sent = 0
        self.observer = observer  # (method, "ok" or the error code) after every answer

    # --- single calls ----------------------------------------------------------------

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Answer:
        """Call ``method``; return its answer or raise from the error tree."""
        body = await self._request(method, params or {})
        info = body.get("time")
        return Answer(
            result=body.get("result"),
            total=as_int(body.get("total")),
            next=as_int(body.get("next")),
            time=info if isinstance(info, Mapping) else None,
        )

    # --- batch -----------------------------------------------------------------------

    async def batch(
        self, commands: Sequence[Command], *, halt: bool = False
    ) -> dict[str, CommandOutcome]:
        """Run ``commands`` in batches of ≤50, in order; one outcome per command key.

        A command's own failure is in its outcome (``outcome.error``); only a failure of
        a whole batch request raises.
        """
        keys = [c.key for c in commands]
        if len(set(keys)) != len(keys):
            raise ValueError("batch command keys must be unique")
        outcomes: dict[str, CommandOutcome] = {}
        common = {"auth_connector": self.connector_id}
        for chunk in chunked(commands, MAX_COMMANDS):
            body = await self._request("batch", build_batch(chunk, halt=halt, common=common))
            outcomes.update(split_batch_result(chunk, body.get("result"), now=self.clock.now()))
        return outcomes

    # --- paging ----------------------------------------------------------------------

    async def iter_pages(
        self,
        window: IdWindow,
        *,
        after: int = 0,
        batched: bool = True,
        pages_per_request: int = MAX_COMMANDS,
    ) -> AsyncIterator[list[Mapping[str, Any]]]:
        """Yield the rows of ``window`` after ID ``after``, one list per request.

        ``batched`` chains up to ``pages_per_request`` pages in one ``batch`` request;
        otherwise one page per call. Loops raise ``RejectedError`` (``PAGING_LOOP``).
        """
        cursor = IdCursor(window, after)
        while not cursor.done:
            if batched:
                commands = window.chained_commands(cursor.last_id, pages_per_request)
                outcomes = await self.batch(commands)
                rows = cursor.accept_batch([outcomes[c.key] for c in commands])
            else:
                answer = await self.call(window.method, window.page_params(cursor.last_id))
                rows = cursor.accept(answer.result)
            if rows:
                yield rows

    async def list_all(
        self, window: IdWindow, *, after: int = 0, batched: bool = True
    ) -> list[Mapping[str, Any]]:
        """Every row of ``window`` after ID ``after``, ID ascending."""
        rows: list[Mapping[str, Any]] = []
        async for page in self.iter_pages(window, after=after, batched=batched):
            rows.extend(page)
        return rows

    # --- the wire --------------------------------------------------------------------

    async def _request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception(_worth_retrying),
            sleep=self.clock.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(method, params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _send_once(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if self.governor is not None:
            await self.governor.acquire(method)
        form = dict(params)
        form["auth_connector"] = self.connector_id
        self.requests_sent += 1
        try:
            response = await self.http.post(
                self.endpoint + method,
                content=build_query(form).encode(),
                headers={"content-type": FORM, "accept": "application/json"},
                auth=self.auth or httpx.Auth(),
            )
        except httpx.HTTPError as exc:
            self._observe(method, "NETWORK")
            if _reserves(method, params) and not isinstance(exc, _NOT_SENT):
                raise AmbiguousError(
                    f"{method}: the answer was lost ({type(exc).__name__}); the portal may "
                    "have reserved queue records for it",
                    code="NETWORK",
                    method=method,
                ) from None
            raise RetriableError(
                f"{method}: network error: {type(exc).__name__}: {redact_text(str(exc))}",
                code="NETWORK",
                method=method,
            ) from None
        body = json_body(response.content)
        known = self.governor.known_reset_at(method) if self.governor else None
        error = classify(
            response.status_code,
            body,
            now=self.clock.now(),
            method=method,
            retry_after_header=response.headers.get("retry-after"),
            known_reset_at=known,
        )
        self._observe(method, "ok" if error is None else (error.code or type(error).__name__))
        if error is not None:
            if self.governor is not None:
                await self.governor.on_error(method, error)
            if (
                isinstance(error, RetriableError)
                and error.status in _MAYBE_DONE
                and _reserves(method, params)
            ):
                raise AmbiguousError(
                    f"{error.message}; the portal may have reserved queue records for it",
                    code=error.code,
                    status=error.status,
                    method=method,
                ) from None
            raise error
        if self.governor is not None:
            self.governor.observe(method, body)
        assert isinstance(body, dict)
        return body

    def _observe(self, method: str, outcome: str) -> None:
        if self.observer is not None:
            self.observer(method, outcome)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.retry.wait_after(error, state.attempt_number, self.rng)

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "portal.retry_scheduled",
            extra={
                "portal.method": getattr(error, "method", None),
                "portal.code": getattr(error, "code", None),
                "portal.retry_num": state.attempt_number,
                "portal.wait_s": wait,
            },
        )


_MAYBE_DONE = (500, 502, 504)
"""Answers after which the portal may have carried the call out (a proxy's 502/504, a
500 after the work); 503 is the limiter refusing before any work."""
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before the request left: retrying those can never do anything twice."""


def _worth_retrying(error: BaseException) -> bool:
    return isinstance(error, RetriableError) and not isinstance(error, AmbiguousError)


def _reserves(method: str, params: Mapping[str, Any]) -> bool:
    """A call that reserves queue records: ``event.offline.get`` without ``process_id``,
    alone or inside a ``batch``. Sent twice, the second reserves nothing and the first's
    records stay locked, so its lost answer must not be retried blindly."""
    if method == "event.offline.get":
        return not params.get("process_id")
    if method == "batch":
        commands = params.get("cmd")
        if isinstance(commands, Mapping):
            return any(
                isinstance(c, str) and c.startswith("event.offline.get") and "process_id" not in c
                for c in commands.values()
            )
    return False
