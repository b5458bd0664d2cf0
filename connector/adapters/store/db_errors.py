"""Database failures in words: SQLAlchemy's exceptions → :class:`StoreError` with a reason.

The driver's message says what happened; the operator needs one line naming it — refused,
missing database, authentication, locked, read-only, disk full — not a traceback.
:func:`is_transient` tells the worker which ones to wait out. Messages are matched as
psycopg 3, PyMySQL and sqlite3 word them; the order matters (first match wins).
"""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from connector.errors import StoreError

_PATTERNS: tuple[tuple[str, str, bool], ...] = (
    (
        r'role "[^"]*" does not exist|authentication failed|access denied|password',
        "authentication failed",
        False,
    ),
    (
        r"(relation|table) \S+ does(n't| not) exist|no such table",
        "a table is missing (run db upgrade)",
        False,
    ),
    (
        r"too many (clients|connections)|max_user_connections",
        "the server has no connection to spare",
        True,
    ),
    (
        r"shutting down|starting up|in recovery mode|cannot connect now",
        "the server is restarting",
        True,
    ),
    (
        r"failed to resolve host|name or service not known|nodename nor servname"
        r"|temporary failure in name resolution|unknown mysql server host",
        "the host name does not resolve",
        True,
    ),
    (r"connection refused|can't connect|could not connect", "connection refused", True),
    (
        r"terminating connection|server closed the connection|lost connection|connection reset"
        r"|gone away|adminshutdown|broken pipe",
        "the connection was cut",
        True,
    ),
    (r"database is locked|lock wait timeout|deadlock", "the database is locked", True),
    (
        r"could not serialize|serialization failure|canceling statement|max_statement_time"
        r"|query execution was interrupted",
        "the statement was cut short",
        True,
    ),
    (r"does not exist|unknown database", "the database does not exist", False),
    (
        r"unable to open database",
        "the database file cannot be opened (does its folder exist?)",
        False,
    ),
    (r"readonly|read-only|read only", "the database is read-only", False),
    (r"disk is full|no space left|disk full", "the disk is full", True),
    (r"timeout|timed out", "the database did not answer in time", True),
)


_MISSING_COLUMN = re.compile(
    r"column \"?([\w.]+)\"? does not exist|unknown column '([\w.]+)'|no such column: ([\w.]+)"
)


def _constraint(exc: IntegrityError) -> str:
    """The constraint (and table) an IntegrityError names, as each driver reports it."""
    diag = getattr(exc.orig, "diag", None)  # psycopg
    name = getattr(diag, "constraint_name", None)
    if name:
        table = getattr(diag, "table_name", None)
        return f"{name} on {table}" if table else str(name)
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return first[:200]  # SQLite: "UNIQUE constraint failed: t.a, t.b"; MariaDB: "Duplicate ..."


def reason(exc: BaseException) -> tuple[str, bool]:
    """(what happened, whether waiting may mend it) for a database exception."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if isinstance(exc, IntegrityError):  # name the key: the one fact an operator needs
        return f"a constraint was violated: {_constraint(exc)}", False
    column = _MISSING_COLUMN.search(text)
    if column is not None:  # dropped behind our back: name it, say how to mend it
        name = next(g for g in column.groups() if g)
        return f"column {name} is missing (run db upgrade to add it back)", False
    for pattern, what, transient in _PATTERNS:
        if re.search(pattern, text):
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
