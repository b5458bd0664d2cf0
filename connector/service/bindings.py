"""Start-up checks and event bindings, before any read of portal state.

1. ``feature.get`` for ``rest_offline_extended`` (reserve-then-clear, ``clear=0``) and
   ``rest_auth_connector`` (echo suppression). Without either the connector refuses to run
   with a message saying what the plan lacks.
2. ``event.get``, then ``event.bind event_type=offline`` for every ADD/UPDATE/DELETE event
   the mappings need that is not bound yet for our connector. A duplicate bind
   (``ERROR_CORE`` "Handler already binded") counts as bound. Our offline bindings of CRM
   events no mapping names any more are unbound (``event.unbind``), so the queue does not
   fill with events nobody drains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.core.mapping_model import MappingSet
from connector.errors import ConfigError, RejectedError
from connector.service.drainer import PortalCalls

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

    @property
    def events(self) -> list[str]:
        return sorted(self.already + self.bound)


async def check_features(portal: PortalCalls) -> dict[str, bool]:
    """``feature.get`` for each required feature; raise ConfigError naming the missing ones."""
    found: dict[str, bool] = {}
    for code in FEATURES:
        answer = await portal.call("feature.get", {"CODE": code})
        result = answer.result if isinstance(answer.result, Mapping) else {}
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
    portal: PortalCalls, mappings: MappingSet, connector_id: str, *, check: bool = True
) -> BindingReport:
    """Make sure every offline event the mappings need is bound for our connector."""
    report = BindingReport()
    if check:
        report.features = await check_features(portal)
    existing = offline_bindings((await portal.call("event.get")).result, connector_id)
    for mapping in mappings:
        for event in mapping.event_names():
            if event in existing:
                report.already.append(event)
                continue
            try:
                await portal.call("event.bind", {"event": event, "event_type": "offline"})
            except RejectedError as exc:
                if "already" not in str(exc).lower():
                    raise
                report.already.append(event)
                continue
            report.bound.append(event)
    # Bindings no mapping names any more (a mapping removed) would only fill the queue.
    wanted = {event for mapping in mappings for event in mapping.event_names()}
    for event in sorted(existing - wanted):
        if not event.startswith("ONCRM"):
            continue
        await portal.call("event.unbind", {"event": event, "event_type": "offline"})
        log.info("unbound %s: no mapping names its entity", event)
        report.unbound.append(event)
    return report
