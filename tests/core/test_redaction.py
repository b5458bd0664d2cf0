"""Tokens and secrets never survive redaction of URLs, parameters and text."""

from __future__ import annotations

import logging

import pytest

from connector.adapters.log_redaction import RedactingFilter, guard_logger
from connector.core.redaction import (
    MASK,
    is_secret_name,
    redact_params,
    redact_text,
    redact_url,
)


def test_url_query_secrets_are_masked() -> None:
    """auth, refresh_token and client_secret values are masked; other values stay."""
    url = (
        "https://oauth.example/oauth/token/?grant_type=refresh_token&client_id=app.1"
        "&client_secret=S3CRETvalue&refresh_token=R3FRESHvalue&auth=ACC3SSvalue"
    )

    redacted = redact_url(url)

    for secret in ("S3CRETvalue", "R3FRESHvalue", "ACC3SSvalue"):
        assert secret not in redacted
    assert "client_id=app.1" in redacted
    assert "grant_type=refresh_token" in redacted


def test_url_password_is_masked() -> None:
    """A password in the URL's authority is masked, the user name kept."""
    redacted = redact_url("postgresql://alice:pa55word@db.local/x")

    assert "pa55word" not in redacted
    assert "alice" in redacted


def test_url_without_query_is_unchanged() -> None:
    """A URL with nothing secret comes back as it was."""
    url = "https://portal.example/rest/crm.deal.list"

    assert url == redact_url(url)


def test_nested_params_are_masked() -> None:
    """Secret keys at any depth are masked, including bracketed auth[access_token]."""
    params = {
        "auth": "tok1234567",
        "auth_connector": "erp",
        "data": {"auth": {"access_token": "abcdef123", "domain": "x"}},
        "items": [{"refresh_token": "qwerty987"}],
        "note": "see auth=inline77777",
        "count": 3,
    }

    redacted = redact_params(params)

    text = repr(redacted)
    for secret in ("tok1234567", "abcdef123", "qwerty987", "inline77777"):
        assert secret not in text
    assert redacted["auth_connector"] == "erp"
    assert redacted["count"] == 3


@pytest.mark.parametrize(
    "text",
    [
        "POST /rest/x?auth=abc123xyz&id=1",
        'body {"access_token": "abc123xyz", "x": 1}',
        "form refresh_token=abc123xyz&client_id=a",
        "client_secret='abc123xyz'",
        "auth[access_token]=abc123xyz",
    ],
)
def test_text_pairs_are_masked(text: str) -> None:
    """name=value and "name": "value" pairs of secret names are masked in free text."""
    redacted = redact_text(text)

    assert "abc123xyz" not in redacted
    assert MASK in redacted


def test_known_secrets_are_masked_anywhere() -> None:
    """A known secret string is masked even outside any name=value pair."""
    assert redact_text("token is zzzzzzzz here", ["zzzzzzzz", None]) == "token is *** here"


def test_short_known_secrets_are_not_searched() -> None:
    """Very short 'secrets' are not replaced (they would mangle ordinary words)."""
    assert redact_text("the cat", ["cat"]) == "the cat"


def test_error_codes_are_kept() -> None:
    """'code=...' and auth_connector=... in text are not secrets."""
    text = "error code=QUERY_LIMIT_EXCEEDED auth_connector=erp"

    assert text == redact_text(text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auth", True),
        ("AUTH", True),
        ("auth[access_token]", True),
        ("auth_connector", False),
        ("fields[TITLE]", False),
        ("code", True),
    ],
)
def test_secret_names(name: str, expected: bool) -> None:
    """Secret parameter names are recognised, bracketed or not, in any case."""
    assert expected == is_secret_name(name)


def test_logging_filter_masks_the_final_message() -> None:
    """A record whose formatted message holds a secret pair is rewritten, args dropped."""
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: GET %s",
        ("https://o/t?refresh_token=abc123xyz",),
        None,
    )

    assert RedactingFilter().filter(record)
    assert "abc123xyz" not in record.getMessage()
    assert MASK in record.getMessage()


def test_logging_filter_leaves_clean_records_alone() -> None:
    """A record with nothing secret keeps its message and args."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%d", (5,), None)

    RedactingFilter().filter(record)

    assert record.args == (5,)


def test_guard_logger_is_idempotent() -> None:
    """Guarding a logger twice attaches one filter."""
    guard_logger("connector.test.guarded")
    guard_logger("connector.test.guarded")

    filters = logging.getLogger("connector.test.guarded").filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1
