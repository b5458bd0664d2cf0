"""What the control API mixins share: the :func:`locked` decorator and
:class:`ControlBase`, the attributes and methods they use from the ``Emulator`` they are
mixed into (declared here, provided by ``app.Emulator``).

The mixins: ``control.ControlAPI`` (apps, tokens, users, deliveries), ``control_crm``
(UI actions, seeding), ``control_limits`` (plan, limits, faults) and
``control_inspection`` (request log, queue, clock, Push&Pull, state).
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from connector.emulator.clock import Clock
    from connector.emulator.context import CallContext
    from connector.emulator.oauth import OAuthServer
    from connector.emulator.portal import Portal
    from connector.emulator.request_log import LogEntry
    from connector.emulator.webhooks import Webhook

F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """Run a control operation under the emulator's lock: tests may call the Python API
    from their own thread while a :class:`~connector.emulator.server.ServerThread`
    serves requests."""

    @functools.wraps(fn)
    def wrapper(self: ControlBase, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return fn(self, *args, **kwargs)

    return cast(F, wrapper)


class ControlBase:
    """What every control mixin relies on; :class:`~connector.emulator.app.Emulator`
    provides it."""

    clock: Clock
    oauth: OAuthServer
    portals: dict[str, Portal]
    log: deque[LogEntry]
    default_portal: Portal
    seed: int
    lock: threading.RLock

    def portal(self, key: str | None = None) -> Portal:
        raise NotImplementedError

    def add_webhook(
        self,
        user_id: int = 1,
        *,
        secret: str | None = None,
        scopes: frozenset[str] | set[str] | None = None,
        portal: str | None = None,
    ) -> Webhook:
        raise NotImplementedError

    def finish_request(self, portal: Portal, ctx: CallContext) -> dict[str, dict[str, int]]:
        raise NotImplementedError

    def rest_base(self, portal: Portal, base_url: str) -> str:
        raise NotImplementedError
