"""Start-up checks and event bindings, before any read of portal state.

1. ``feature.get`` for ``rest_offline_extended`` (reserve-then-clear, ``clear=0``) and
   ``rest_auth_connector`` (echo suppression). Without either the connector refuses to run
   with a message saying what the plan lacks.
2. ``event.get``, then ``event.bind event_type=offline`` for every ADD/UPDATE/DELETE event
   the mappings need that is not bound yet for our connector. A duplicate bind
   (``ERROR_CORE`` "Handler already binded") counts as bound. Our offline bindings of CRM
   events no mapping names any more are unbound (``event.unbind``), so the queue does not
   fill with events nobody drains.

Start-up is one request when the bindings are in place: both ``feature.get``, the
``event.get`` and any ``probes`` a caller adds (backfill's highest-ID reads) travel in one
``batch``. The probes' answers count only when no bind was needed (a read before a bind
could miss a change); the binds and unbinds, when there are any, are one more batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.core.batch_commands import Command, CommandOutcome
from connector.core.mapping_model import MappingSet
from connector.errors import ConfigError, RejectedError
from connector.service.drain_types import PortalCalls

log = logging.getLogger(__name__)

FEATURES = {
    "rest_offline_extended": "the extended offline queue (event.offline.get clear=0)",
    "rest_auth_connector": "the auth_connector key that keeps the connector's writes "
    "from coming back as events",
}


@dataclass
class BindingReport:
    features: dict[str, bool] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    bound: list[str] = field(default_factory=list)
    unbound: list[str] = field(default_factory=list)
    probes: dict[str, CommandOutcome] = field(default_factory=dict)  # empty after a bind

    @property
    def events(self) -> list[str]:
        return sorted(self.already + self.bound)


def _feature_commands() -> list[Command]:
    return [Command(f"feature_{n}", "feature.get", {"CODE": c}) for n, c in enumerate(FEATURES)]


def _features_from(outcomes: Mapping[str, CommandOutcome]) -> dict[str, bool]:
    """Each required feature's answer; raise ConfigError naming the missing ones."""
    found: dict[str, bool] = {}
    for command, code in zip(_feature_commands(), FEATURES, strict=True):
        outcome = outcomes[command.key]
        if outcome.error is not None:
            raise outcome.error
        result = outcome.result if isinstance(outcome.result, Mapping) else {}
        found[code] = str(result.get("value", "")).upper() == "Y"
    missing = [code for code, ok in found.items() if not ok]
    if missing:
        what = "; ".join(f"{code}: {FEATURES[code]}" for code in missing)
        raise ConfigError(
            f"the portal's plan lacks {what} — the connector needs the Professional plan or higher"
        )
    return found


def offline_bindings(rows: Any, connector_id: str) -> set[str]:
    """Event names bound offline for ``connector_id`` in an ``event.get`` answer."""
    names: set[str] = set()
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping):
            continue
        if str(row.get("offline", "0")) == "1" and str(row.get("connector_id", "")) == connector_id:
            names.add(str(row.get("event", "")).upper())
    return names


async def ensure_bindings(
    portal: PortalCalls,
    mappings: MappingSet,
    connector_id: str,
    *,
    check: bool = True,
    probes: Sequence[Command] = (),
) -> BindingReport:
    """Make sure every offline event the mappings need is bound for our connector."""
    report = BindingReport()
    commands = (_feature_commands() if check else []) + [Command("events", "event.get")]
    outcomes = await portal.batch([*commands, *probes])
    if check:
        report.features = _features_from(outcomes)
    listed = outcomes["events"]
    if listed.error is not None:
        raise listed.error
    existing = offline_bindings(listed.result, connector_id)
    wanted = {event for mapping in mappings for event in mapping.event_names()}
    changes: list[Command] = []
    for mapping in mappings:
        for event in mapping.event_names():
            if event in existing:
                report.already.append(event)
            else:
                changes.append(
                    Command(
                        f"bind_{len(changes)}",
                        "event.bind",
                        {"event": event, "event_type": "offline"},
                    )
                )
    # Bindings no mapping names any more (a mapping removed) would only fill the queue.
    for event in sorted(existing - wanted):
        if event.startswith("ONCRM"):
            changes.append(
                Command(
                    f"unbind_{len(changes)}",
                    "event.unbind",
                    {"event": event, "event_type": "offline"},
                )
            )
    done = await portal.batch(changes) if changes else {}
    for command in changes:
        event = str(command.params["event"])
        error = done[command.key].error
        if command.method == "event.bind":
            if error is not None and not (
                isinstance(error, RejectedError) and "already" in str(error).lower()
            ):
                raise error
            (report.already if error is not None else report.bound).append(event)
        else:
            if error is not None:
                raise error
            log.info("unbound %s: no mapping names its entity", event)
            report.unbound.append(event)
    if not report.bound:
        report.probes = {c.key: outcomes[c.key] for c in probes}
    return report
