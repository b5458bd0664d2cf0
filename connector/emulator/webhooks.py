"""Incoming webhooks (``/rest/<user_id>/<secret>/<method>``): the :class:`Webhook`
record ``Emulator.add_webhook`` creates, and the scopes a webhook gets by default.

A leaf: the HTTP handling (``request_handling``) and the control surface read it.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_WEBHOOK_SCOPES = frozenset(
    {
        "crm",
        "user",
        "user_brief",
        "user_basic",
        "pull",
        "pull_channel",
        "placement",
        "entity",
        "im",
        "task",
    }
)


@dataclass
class Webhook:
    """An incoming webhook: ``/rest/<user_id>/<secret>/`` on one portal."""

    member_id: str
    user_id: int
    secret: str
    scopes: frozenset[str] = ALL_WEBHOOK_SCOPES
