"""Classifying portal answers: (HTTP status, body) → error class and retry wait."""

from __future__ import annotations

from typing import Any

import pytest

from connector.core.portal_answers import (
    DEFAULT_OPERATING_WAIT_S,
    OperatingTime,
    as_int,
    classify,
    classify_command_error,
    classify_token_answer,
    json_body,
    operating_time,
    parse_retry_after,
)
from connector.errors import (
    AuthError,
    AuthRevokedError,
    FatalPortalError,
    PortalError,
    RejectedError,
    RetriableError,
)

NOW = 1_700_000_000.0


def err(code: str, description: str = "text", **extra: Any) -> dict[str, Any]:
    return {"error": code, "error_description": description, **extra}


CASES: list[tuple[str, int, Any, type[PortalError] | None, float | None]] = [
    ("plain success", 200, {"result": [1, 2], "time": {}}, None, None),
    ("false result is still success", 200, {"result": False}, None, None),
    ("rate limit", 503, err("QUERY_LIMIT_EXCEEDED", "Too many requests"), RetriableError, None),
    (
        "operating limit waits until reset",
        429,
        err("OPERATION_TIME_LIMIT", time={"operating_reset_at": NOW + 42}),
        RetriableError,
        42.0,
    ),
    (
        "operating limit without reset time",
        429,
        err("OPERATION_TIME_LIMIT"),
        RetriableError,
        DEFAULT_OPERATING_WAIT_S,
    ),
    (
        "operating reset in the past waits 0",
        429,
        err("OPERATION_TIME_LIMIT", time={"operating_reset_at": NOW - 5}),
        RetriableError,
        0.0,
    ),
    ("overload as 503", 503, err("OVERLOAD_LIMIT"), FatalPortalError, None),
    ("overload as 401", 401, err("OVERLOAD_LIMIT"), FatalPortalError, None),
    ("overload inside a 200 body", 200, err("OVERLOAD_LIMIT"), FatalPortalError, None),
    ("a plan downgrade", 403, err("WRONG_LICENSE"), FatalPortalError, None),
    ("expired token", 401, err("expired_token"), AuthError, None),
    ("invalid token", 401, err("invalid_token"), AuthError, None),
    ("no auth found", 401, err("NO_AUTH_FOUND"), AuthError, None),
    ("invalid grant", 400, err("invalid_grant"), AuthRevokedError, None),
    ("server error code", 500, err("INTERNAL_SERVER_ERROR"), RetriableError, None),
    ("unexpected answer code", 500, err("ERROR_UNEXPECTED_ANSWER"), RetriableError, None),
    ("unknown code on 5xx", 502, err("SOMETHING"), RetriableError, None),
    ("bare 502 with HTML", 502, None, RetriableError, None),
    ("bare 429", 429, None, RetriableError, None),
    ("bare 404", 404, None, RejectedError, None),
    ("crm not found has an empty code", 400, err("", "Not found"), RejectedError, None),
    ("method error inside a 200 body", 200, err("ERROR_CORE", "bad"), RejectedError, None),
    ("bad argument", 400, err("INVALID_ARG_VALUE"), RejectedError, None),
    ("method not found", 404, err("ERROR_METHOD_NOT_FOUND"), RejectedError, None),
    ("portal deleted", 403, err("PORTAL_DELETED"), FatalPortalError, None),
    ("missing scope", 403, err("insufficient_scope"), FatalPortalError, None),
    ("plan without REST", 403, err("ACCESS_DENIED"), FatalPortalError, None),
    ("payment required", 402, err("PAYMENT_REQUIRED"), FatalPortalError, None),
    ("200 without result", 200, {"total": 3}, RetriableError, None),
    ("200 that is not JSON", 200, None, RetriableError, None),
    ("200 JSON list", 200, [1, 2], RetriableError, None),
]


@pytest.mark.parametrize(
    ("status", "body", "expected", "wait"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_classify_table(
    status: int, body: Any, expected: type[PortalError] | None, wait: float | None
) -> None:
    """Each (status, body) maps to exactly the error class and wait the table names."""
    error = classify(status, body, now=NOW, method="crm.deal.list")

    if expected is None:
        assert error is None
        return
    assert type(error) is expected
    assert error is not None
    assert error.status == status
    assert error.method == "crm.deal.list"
    if isinstance(error, RetriableError):
        assert wait == error.retry_after
    else:
        assert wait is None


def test_retry_after_header_is_honoured() -> None:
    """A Retry-After header sets the wait of a rate-limit answer."""
    error = classify(503, err("QUERY_LIMIT_EXCEEDED"), now=NOW, retry_after_header="3")

    assert isinstance(error, RetriableError)
    assert error.retry_after == 3.0


def test_known_reset_time_fills_in_for_a_bare_operating_limit() -> None:
    """Without its own reset time, OPERATION_TIME_LIMIT waits for the last one seen."""
    error = classify(429, err("OPERATION_TIME_LIMIT"), now=NOW, known_reset_at=NOW + 100)

    assert isinstance(error, RetriableError)
    assert error.retry_after == 100.0


def test_overload_message_says_stop() -> None:
    """The fatal overload message tells the operator to contact support, naming the code."""
    error = classify(503, err("OVERLOAD_LIMIT"), now=NOW, method="crm.deal.add")

    assert error is not None
    assert "OVERLOAD_LIMIT" in str(error)
    assert "support" in str(error)
    assert error.code == "OVERLOAD_LIMIT"


def test_description_is_redacted() -> None:
    """A description echoing a token never reaches the message."""
    error = classify(400, err("ERROR_CORE", "bad request auth=sekret123token"), now=NOW)

    assert error is not None
    assert "sekret123token" not in str(error)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        ("-3", 0.0),
        ("Tue, 14 Nov 2023 22:13:40 GMT", 20.0),
        ("garbage", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After in seconds or as an HTTP date becomes seconds from now."""
    assert expected == parse_retry_after(value, NOW)


def test_operating_time_read_from_body() -> None:
    """time.operating and time.operating_reset_at are read as floats; junk gives None."""
    body = {"result": 1, "time": {"operating": "12.5", "operating_reset_at": NOW}}

    assert OperatingTime(12.5, NOW) == operating_time(body)
    assert OperatingTime() == operating_time({"result": 1})
    assert OperatingTime() == operating_time([1])
    assert OperatingTime(None, None) == operating_time({"time": {"operating": True}})


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"error": "", "error_description": "Not found"}, RejectedError),
        ({"error": "QUERY_LIMIT_EXCEEDED"}, RetriableError),
        ({"error": "OVERLOAD_LIMIT"}, FatalPortalError),
        ("just text", RejectedError),
    ],
)
def test_command_error(error: Any, expected: type[PortalError]) -> None:
    """A batch command's error (no HTTP status) is classified by its code."""
    result = classify_command_error(error, now=NOW, method="crm.deal.get")

    assert type(result) is expected
    assert result.status is None


TOKEN_CASES: list[tuple[str, int, Any, type[PortalError] | None]] = [
    ("new pair", 200, {"access_token": "a", "refresh_token": "r"}, None),
    ("spent refresh token", 400, err("invalid_grant"), AuthRevokedError),
    ("payment required", 200, err("PAYMENT_REQUIRED"), AuthRevokedError),
    ("bad client", 401, err("invalid_client"), FatalPortalError),
    ("server error body", 503, err("temporarily_unavailable"), RetriableError),
    ("bare 502", 502, None, RetriableError),
    ("missing tokens", 200, {"access_token": "a"}, FatalPortalError),
    ("bare 400", 400, None, FatalPortalError),
]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [case[1:] for case in TOKEN_CASES],
    ids=[case[0] for case in TOKEN_CASES],
)
def test_token_answers(status: int, body: Any, expected: type[PortalError] | None) -> None:
    """OAuth server answers map to: tokens, revoked (auth set), fatal or retriable."""
    error = classify_token_answer(status, body)

    if expected is None:
        assert error is None
    else:
        assert type(error) is expected


def test_invalid_grant_tells_operator_what_to_run() -> None:
    """invalid_grant names the exact command that fixes it."""
    error = classify_token_answer(400, err("invalid_grant"))

    assert error is not None
    assert "b24-connector auth set" in str(error)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12, 12),
        ("12", 12),
        (" 7 ", 7),
        ("-3", -3),
        (12.0, 12),
        (12.5, None),
        (True, None),
        (None, None),
        ("", None),
        ("12a", None),
        ("١٢", None),  # Arabic-Indic digits are digits to str.isdigit, not to the portal
        ("9" * 40, None),
        ([1], None),
    ],
)
def test_as_int_takes_the_portals_numbers_and_digit_strings_only(
    raw: object, expected: object
) -> None:
    """``"ID": "12"`` and ``"total": 12`` alike; everything else is not an integer."""
    assert as_int(raw) == expected


def test_json_body_is_none_for_a_body_that_is_not_json() -> None:
    """A proxy's HTML error page or a cut-off body parses to ``None``, never raises."""
    assert json_body(b'{"result": 1}') == {"result": 1}
    assert json_body(b"<html>502</html>") is None
    assert json_body(b'{"result": ') is None
    assert json_body(b"\xff\xfe") is None
