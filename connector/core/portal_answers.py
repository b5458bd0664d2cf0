"""Classify what the portal answered: success, or which error and how long to wait.

Bitrix24 errors are ``{"error": CODE, "error_description": text}``, sometimes with HTTP
200 (a batch command, the old ``OVERLOAD_LIMIT``), sometimes with 4xx/5xx. The code
decides, not the status (digest A30). Each answer maps to one class of the error tree,
chosen by what the caller does next:

* :class:`~connector.errors.RetriableError` — network trouble, 5xx,
  ``QUERY_LIMIT_EXCEEDED`` (the request was not executed), ``OPERATION_TIME_LIMIT``
  (wait until ``operating_reset_at``); ``retry_after`` is the server-dictated wait.
* :class:`~connector.errors.AuthError` — ``expired_token``/``invalid_token``: refresh once.
* :class:`~connector.errors.AuthRevokedError` — the refresh token is spent or revoked.
* :class:`~connector.errors.RejectedError` — the method refused this call: bad for this
  record only.
* :class:`~connector.errors.FatalPortalError` — stop all traffic (``OVERLOAD_LIMIT``,
  a deleted portal, missing scope or plan): a human must act.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from connector.core import json_codec
from connector.core.redaction import redact_text
from connector.errors import (
    AuthError,
    AuthRevokedError,
    FatalPortalError,
    PortalError,
    RejectedError,
    RetriableError,
)

__all__ = [
    "DEFAULT_OPERATING_WAIT_S",
    "OperatingTime",
    "as_int",
    "classify",
    "classify_command_error",
    "classify_token_answer",
    "json_body",
    "operating_time",
    "parse_retry_after",
]

DEFAULT_OPERATING_WAIT_S = 60.0
"""Wait after ``OPERATION_TIME_LIMIT`` when no ``operating_reset_at`` is known (one basket)."""

AUTH_SET_HINT = "run: b24-connector auth set < token.txt (or --refresh-token-file F)"

_REFRESH = frozenset({"expired_token", "invalid_token", "no_auth_found"})
_RETRY = frozenset(
    {
        "query_limit_exceeded",
        "operation_time_limit",
        "internal_server_error",
        "error_unexpected_answer",
    }
)
_FATAL = frozenset(
    {
        "overload_limit",
        "portal_deleted",
        "access_denied",
        "insufficient_scope",
        "invalid_scope",
        "user_access_error",
        "invalid_credentials",
        "invalid_client",
        "invalid_request",
        "payment_required",
        "error_oauth",
        "wrong_client",
        "wrong_license",
    }
)
_FATAL_HINTS = {
    "overload_limit": "REST API is blocked for this portal; contact Bitrix24 support "
    "before sending anything else",
    "portal_deleted": "the portal was deleted",
    "wrong_license": "the portal's plan no longer includes what the connector needs "
    "(offline events, auth_connector: Professional or higher); the worker stops — "
    "restart it once the plan is back",
    "access_denied": "the app may not call this method (plan, or not an administrator)",
    "insufficient_scope": "the app lacks the scope for this method; reinstall with it",
    "invalid_client": "the OAuth server rejected B24_CLIENT_ID/B24_CLIENT_SECRET",
    "payment_required": "the app's trial or paid period has ended",
}


@dataclass(frozen=True)
class OperatingTime:
    """A method's spent execution time (``time.operating``, seconds) and when it resets."""

    operating: float | None = None
    reset_at: float | None = None


def operating_time(body: Any) -> OperatingTime:
    """Read ``time.operating`` and ``time.operating_reset_at`` (unix seconds), if present."""
    if not isinstance(body, Mapping):
        return OperatingTime()
    info = body.get("time")
    if not isinstance(info, Mapping):
        return OperatingTime()
    return OperatingTime(
        as_number(info.get("operating")), as_number(info.get("operating_reset_at"))
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``, ≥ 0."""
    if not value:
        return None
    seconds = as_number(value.strip())
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def classify(
    status: int,
    body: Any,
    *,
    now: float,
    method: str | None = None,
    retry_after_header: str | None = None,
    known_reset_at: float | None = None,
) -> PortalError | None:
    """``None`` for a successful answer, else the error to raise (not raised here).

    ``body`` is the decoded JSON (or ``None`` when it was not JSON). ``known_reset_at`` is
    the method's last seen ``operating_reset_at``, used when an ``OPERATION_TIME_LIMIT``
    answer does not carry its own.
    """
    header_wait = parse_retry_after(retry_after_header, now)
    if isinstance(body, Mapping) and "error" in body:
        code = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
        reset_at = operating_time(body).reset_at or known_reset_at
        return _from_code(code, description, status, method, now, header_wait, reset_at)
    if status >= 500 or status == 429:
        return RetriableError(
            _message(method, "", f"HTTP {status}", status),
            status=status,
            method=method,
            retry_after=header_wait,
        )
    if status >= 400:
        return RejectedError(
            _message(method, "", f"HTTP {status}", status), status=status, method=method
        )
    if not isinstance(body, Mapping) or "result" not in body:
        return RetriableError(
            _message(method, "ERROR_UNEXPECTED_ANSWER", "the answer has no result", status),
            code="ERROR_UNEXPECTED_ANSWER",
            status=status,
            method=method,
        )
    return None


def classify_command_error(error: Any, *, now: float, method: str | None = None) -> PortalError:
    """The error of one batch command (``result_error[key]``), which has no HTTP status."""
    if isinstance(error, Mapping):
        code = str(error.get("error") or "")
        description = str(error.get("error_description") or "")
    else:
        code, description = "", str(error or "")
    reset_at = operating_time(error).reset_at
    return _from_code(code, description, None, method, now, None, reset_at)


def classify_token_answer(status: int, body: Any) -> PortalError | None:
    """Classify the OAuth server's answer to a token request; ``None`` means new tokens."""
    if isinstance(body, Mapping) and body.get("error"):
        code = str(body["error"])
        lowered = code.lower()
        if lowered == "invalid_grant":
            return AuthRevokedError(
                f"the refresh token was refused (invalid_grant): it was spent, expired or "
                f"revoked; {AUTH_SET_HINT}",
                code=code,
                status=status,
            )
        if lowered == "payment_required":
            return AuthRevokedError(
                f"refresh refused (PAYMENT_REQUIRED): the app's trial or paid period has ended "
                f"or it was removed; renew it, then {AUTH_SET_HINT}",
                code=code,
                status=status,
            )
        if status >= 500:
            return RetriableError(
                f"OAuth server error {code} (HTTP {status})", code=code, status=status
            )
        hint = _FATAL_HINTS.get(lowered, "the OAuth server refused the refresh")
        return FatalPortalError(
            f"token refresh failed: {code} (HTTP {status}): {hint}", code=code, status=status
        )
    if status >= 500 or status == 429:
        return RetriableError(f"OAuth server answered HTTP {status}", status=status)
    if (
        status >= 400
        or not isinstance(body, Mapping)
        or not body.get("access_token")
        or not body.get("refresh_token")
    ):
        return FatalPortalError(
            f"token refresh failed: unexpected answer (HTTP {status}) from the OAuth server",
            status=status,
        )
    return None


def _from_code(
    code: str,
    description: str,
    status: int | None,
    method: str | None,
    now: float,
    header_wait: float | None,
    reset_at: float | None,
) -> PortalError:
    lowered = code.lower()
    text = _message(method, code, description, status)
    if lowered == "operation_time_limit":
        wait = max(0.0, reset_at - now) if reset_at is not None else None
        if wait is None:
            wait = header_wait if header_wait is not None else DEFAULT_OPERATING_WAIT_S
        return RetriableError(text, code=code, status=status, method=method, retry_after=wait)
    if lowered in _RETRY:
        return RetriableError(
            text, code=code, status=status, method=method, retry_after=header_wait
        )
    if lowered in _REFRESH:
        return AuthError(text, code=code, status=status, method=method)
    if lowered == "invalid_grant":
        return AuthRevokedError(f"{text}; {AUTH_SET_HINT}", code=code, status=status, method=method)
    if lowered in _FATAL:
        hint = _FATAL_HINTS.get(lowered)
        return FatalPortalError(
            f"{text}; {hint}" if hint else text, code=code, status=status, method=method
        )
    if status is not None and (status >= 500 or status == 429):
        return RetriableError(
            text, code=code, status=status, method=method, retry_after=header_wait
        )
    return RejectedError(text, code=code, status=status, method=method)


def _message(method: str | None, code: str, description: str, status: int | None) -> str:
    parts = [f"{method}:" if method else "portal:"]
    if code:
        parts.append(code)
    if status is not None:
        parts.append(f"(HTTP {status})")
    text = " ".join(parts)
    if description:
        text = f"{text}: {redact_text(description)[:300]}"
    return text


def as_int(value: Any) -> int | None:
    """A JSON integer or a string of digits as int (the portal sends both: ``"ID": "12"``,
    ``"total": 12``); ``None`` for anything else — bools, fractions, words, a digit string
    too long to be an ID."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if digits.isascii() and digits.isdigit() and len(digits) < 40:
            return int(text)
    return None


def json_body(content: bytes) -> Any:
    """An HTTP body as JSON, or ``None`` when it is not JSON (a proxy's HTML page)."""
    try:
        return json_codec.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def as_number(value: Any) -> float | None:
    """A JSON number or numeric string as float; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
