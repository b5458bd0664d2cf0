"""Secrets kept out of log lines: a logging filter over the core's redaction rules
(``core/redaction.py``), for loggers that may print URLs or bodies."""

from __future__ import annotations

import logging

from connector.core.redaction import redact_text

__all__ = ["RedactingFilter", "guard_logger"]


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record's final message.

    Attach it to a logger that may print URLs or bodies (``httpx`` logs every request
    URL at INFO): ``logging.getLogger("httpx").addFilter(RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def guard_logger(name: str) -> None:
    """Attach one :class:`RedactingFilter` to logger ``name`` (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
