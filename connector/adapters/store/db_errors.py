"""Database failures in words: SQLAlchemy's exceptions → :class:`StoreError` with a reason.

The driver's message says what happened; the operator needs one line naming it — refused,
missing database, authentication, locked, read-only, disk full — not a traceback.
:func:`is_transient` tells the worker which ones to wait out.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connector.errors import StoreError

_REASONS: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("connection refused", "can't connect", "could not connect"), "connection refused", True),
    (
        (
            "terminating connection",
            "server closed the connection",
            "lost connection",
            "connection reset",
            "gone away",
            "adminshutdown",
            "broken pipe",
        ),
        "the connection was cut",
        True,
    ),
    (("database is locked", "lock wait timeout", "deadlock"), "the database is locked", True),
    (
        ("authentication failed", "access denied", 'role "', "password"),
        "authentication failed",
        False,
    ),
    (
        ("does not exist", "unknown database", "unable to open database"),
        "the database does not exist",
        False,
    ),
    (("readonly", "read-only", "read only"), "the database is read-only", False),
    (
        ("disk is full", "no space left", "disk full", "database or disk is full"),
        "the disk is full",
        True,
    ),
    (("timeout", "timed out"), "the database did not answer in time", True),
)


def reason(exc: BaseException) -> tuple[str, bool]:
    """(what happened, whether waiting may mend it) for a database exception."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    for needles, what, transient in _REASONS:
        if any(n in text for n in needles):
            return what, transient
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "the connection was cut", True
    return f"{type(getattr(exc, 'orig', None) or exc).__name__}", False


def store_error(exc: SQLAlchemyError, *, what: str = "the database") -> StoreError:
    """One line: ``the database failed: connection refused (OperationalError)``."""
    why, transient = reason(exc)
    kind = type(getattr(exc, "orig", None) or exc).__name__
    return StoreError(f"{what} failed: {why} ({kind})", transient=transient)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError) and reason(exc)[1]
