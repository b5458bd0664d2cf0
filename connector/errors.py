"""The one error tree of the connector.

Every error the connector raises on purpose derives from :class:`ConnectorError`.
The branches say what the caller does next:

* :class:`ConfigError` — the operator must fix configuration (CLI exit code 2).
* :class:`PortalError` — the portal answered with an error or could not be reached;
  its subclasses say whether to retry, refresh the token, drop the record or stop.
* :class:`StoreError` — the local database failed.
* :class:`RecordError` — one record cannot be synced (bad data); the rest flows on.
* :class:`MappingError` — a mapping file is broken (a kind of configuration error).

Messages never contain tokens or secrets: build them from names, ids and codes only.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error raised by the connector on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ConnectorError):
    """A setting or a file the operator controls is missing or malformed."""

    exit_code = 2


class MappingError(ConfigError):
    """A mapping file is broken; the message names file, key and line."""

    def __init__(
        self, message: str, *, file: str, key: str | None = None, line: int | None = None
    ) -> None:
        where = file if line is None else f"{file}:{line}"
        text = f"{where}: {message}" if key is None else f"{where}: {key}: {message}"
        super().__init__(text)
        self.file = file
        self.key = key
        self.line = line


class StoreError(ConnectorError):
    """The local database failed (unreachable, schema out of date, constraint).

    ``transient`` says whether waiting may mend it (a cut connection, a lock), or an
    operator must act (a missing database, a refused login, a read-only file).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SchemaOutOfDate(StoreError):
    """The database schema is not at the head revision: run ``db upgrade``."""


class PortalError(ConnectorError):
    """The portal answered with an error, or could not be reached.

    ``code`` is the Bitrix24 error code (``QUERY_LIMIT_EXCEEDED``, ``expired_token``…),
    ``status`` the HTTP status, ``method`` the REST method called.
    """

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, method: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.method = method


class RetriableError(PortalError):
    """Try again later: network trouble, 5xx, rate or operating-time limits.

    ``retry_after`` is the wait the server dictated, in seconds, when it said one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        method: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, method=method)
        self.retry_after = retry_after


class AmbiguousError(RetriableError):
    """The request may have reached the portal and taken effect; its answer was lost
    (a timeout or a reset after sending). Not retried blindly: for a call that reserves
    (``event.offline.get`` without ``process_id``) the caller looks for what it reserved."""


class AuthError(PortalError):
    """The access token is expired or invalid: refresh once, then retry."""


class AuthRevokedError(PortalError):
    """The refresh token is spent or revoked: an operator must run ``auth set``."""

    exit_code = 2


class RejectedError(PortalError):
    """The method refused this call (bad field, not found…): fatal for the record only."""


class FatalPortalError(PortalError):
    """Stop all traffic and alert a human (``OVERLOAD_LIMIT``, portal deleted…)."""


class RecordError(ConnectorError):
    """One record cannot be synced; names the entity, the record and the field."""

    def __init__(
        self, message: str, *, entity: str, record_id: str | int | None, field: str | None = None
    ) -> None:
        parts = [entity]
        if record_id is not None:
            parts.append(f"id={record_id}")
        if field is not None:
            parts.append(f"field={field}")
        super().__init__(f"{' '.join(parts)}: {message}")
        self.entity = entity
        self.record_id = record_id
        self.field = field
        self.reason = message
