"""Build ``batch`` requests and split their answers back per command.

A batch carries at most 50 commands, each a string ``"method?query"`` whose query is
URL-encoded once here and once more when the whole batch is sent as a form (the "double
encoding" the docs ask for). A later command may use an earlier one's result through
``$result[key][field]`` (see :func:`result_ref`); the portal resolves it after decoding,
so the reference travels as an ordinary parameter value.

The answer's ``result``/``result_error``/``result_total``/``result_next``/``result_time``
sections are PHP arrays: an empty one arrives as ``[]``, a full one as an object. Both
are accepted. A command missing from every section was not executed (``halt=1`` after an
earlier failure).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.core.php_query import build_query
from connector.core.portal_answers import as_int, classify_command_error
from connector.errors import PortalError, RejectedError, RetriableError

__all__ = [
    "MAX_COMMANDS",
    "Command",
    "CommandOutcome",
    "build_batch",
    "chunked",
    "command_text",
    "result_ref",
    "split_batch_result",
]

MAX_COMMANDS = 50
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_METHOD = re.compile(r"^[A-Za-z0-9_.]+$")


@dataclass(frozen=True)
class Command:
    """One sub-call of a batch: a unique ``key``, the REST ``method`` and its parameters."""

    key: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandOutcome:
    """What one command of a batch came back with.

    ``error`` is the classified error (already built, not raised); ``executed`` is False
    when the portal skipped the command (``halt=1`` after an earlier failure).
    """

    key: str
    method: str
    result: Any = None
    error: PortalError | None = None
    total: int | None = None
    next: int | None = None
    time: Mapping[str, Any] | None = None
    executed: bool = True

    @property
    def ok(self) -> bool:
        """True when the command ran and returned a result."""
        return self.executed and self.error is None


def result_ref(key: str, *path: str | int) -> str:
    """``$result[key][0][ID]``: a later command's reference to an earlier result."""
    _check_key(key)
    return "$result" + "".join(f"[{part}]" for part in (key, *path))


def command_text(command: Command, common: Mapping[str, Any] | None = None) -> str:
    """``method?query`` for one command, with ``common`` parameters added to its own."""
    params: dict[str, Any] = dict(command.params)
    for name, value in (common or {}).items():
        params.setdefault(name, value)
    query = build_query(params)
    return f"{command.method}?{query}" if query else command.method


def build_batch(
    commands: Sequence[Command],
    *,
    halt: bool = False,
    common: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters of one ``batch`` call: ``{"halt": 0, "cmd": {key: "method?query"}}``.

    Raises ``ValueError`` for no commands, more than 50, a repeated or malformed key, or
    a nested ``batch`` (forbidden since rest 24.0.0).
    """
    if not commands:
        raise ValueError("a batch needs at least one command")
    if len(commands) > MAX_COMMANDS:
        raise ValueError(f"a batch holds at most {MAX_COMMANDS} commands, got {len(commands)}")
    seen: set[str] = set()
    cmd: dict[str, str] = {}
    for command in commands:
        _check_key(command.key)
        if command.key in seen:
            raise ValueError(f"batch command key {command.key!r} is used twice")
        seen.add(command.key)
        if not _METHOD.match(command.method):
            raise ValueError(f"batch command {command.key!r}: bad method name")
        if command.method.lower() == "batch":
            raise ValueError("a batch cannot contain another batch")
        cmd[command.key] = command_text(command, common)
    return {"halt": 1 if halt else 0, "cmd": cmd}


def chunked(commands: Iterable[Command], size: int = MAX_COMMANDS) -> Iterator[list[Command]]:
    """Split ``commands`` into lists of at most ``size`` (≤ 50), keeping order."""
    if not 1 <= size <= MAX_COMMANDS:
        raise ValueError(f"chunk size must be 1..{MAX_COMMANDS}")
    chunk: list[Command] = []
    for command in commands:
        chunk.append(command)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def split_batch_result(
    commands: Sequence[Command], answer: Any, *, now: float
) -> dict[str, CommandOutcome]:
    """Split the outer ``result`` of a batch answer into one outcome per command, in order.

    ``answer`` is ``body["result"]`` of the batch call. A malformed answer gives every
    command a retriable error rather than raising.
    """
    if not isinstance(answer, Mapping):
        broken = RetriableError(
            "batch: the answer has no result sections",
            code="ERROR_UNEXPECTED_ANSWER",
            method="batch",
        )
        return {c.key: CommandOutcome(c.key, c.method, error=broken) for c in commands}
    results = _section(answer.get("result"))
    errors = _section(answer.get("result_error"))
    totals = _section(answer.get("result_total"))
    nexts = _section(answer.get("result_next"))
    times = _section(answer.get("result_time"))
    outcomes: dict[str, CommandOutcome] = {}
    for command in commands:
        key = command.key
        time_info = times.get(key)
        timing = time_info if isinstance(time_info, Mapping) else None
        if key in errors:
            error = classify_command_error(errors[key], now=now, method=command.method)
            outcomes[key] = CommandOutcome(key, command.method, error=error, time=timing)
        elif key in results:
            outcomes[key] = CommandOutcome(
                key,
                command.method,
                result=results[key],
                total=as_int(totals.get(key)),
                next=as_int(nexts.get(key)),
                time=timing,
            )
        else:
            skipped = RejectedError(
                f"{command.method}: not executed (batch halted)",
                code="BATCH_HALTED",
                method=command.method,
            )
            outcomes[key] = CommandOutcome(key, command.method, error=skipped, executed=False)
    return outcomes


def _section(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _check_key(key: str) -> None:
    if not _KEY.match(key):
        raise ValueError(f"batch command key {key!r} must be letters, digits and '_'")
