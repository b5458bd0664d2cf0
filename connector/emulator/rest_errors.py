"""The error a REST method raises; the app renders it as the Bitrix24 error envelope."""

from __future__ import annotations

from typing import Any


class RestError(Exception):
    """``{"error": code, "error_description": description}`` with an HTTP status.

    ``extra`` is merged into the body (e.g. ``time`` with ``operating_reset_at``).
    """

    def __init__(
        self, code: str, description: str, status: int = 400, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description, **self.extra}


def not_found() -> RestError:
    """CRM "not found": HTTP 400 with an empty code (digest §12)."""
    return RestError("", "Not found", 400)


def argument_error(description: str) -> RestError:
    return RestError("INVALID_ARG_VALUE", description, 400)


def access_denied(description: str = "Access denied") -> RestError:
    return RestError("ACCESS_DENIED", description, 403)
