"""Looking into the emulator and nudging it, part of the control API: the request log
(``requests``, ``clear_log``), the offline queue (``queue_state``, ``queue_raw``), the
test clock (``advance``), Push&Pull commands (``pull_command``) and a JSON overview
(``state``). Mixed into ``control.ControlAPI`` as :class:`InspectionControl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.control_base import ControlBase, locked

if TYPE_CHECKING:
    from connector.emulator.request_log import LogEntry


class InspectionControl(ControlBase):
    """The request log, the queue, the clock, Push&Pull and the state overview."""

    @locked
    def requests(
        self, method: str | None = None, *, portal: str | None = None, since: int = 0
    ) -> list[LogEntry]:
        """Request log entries (optionally one method's, one portal's, after ``since``)."""
        member_id = self.portal(portal).member_id if portal is not None else None
        return [
            e
            for e in self.log
            if e.seq > since
            and (method is None or e.method == method.lower())
            and (member_id is None or e.portal == member_id)
        ]

    @locked
    def clear_log(self) -> None:
        self.log.clear()

    @locked
    @locked
    def queue_raw(
        self,
        client_id: str,
        connector_id: str,
        event_name: str,
        event_data: Any,
        *,
        user_id: int = 1,
        portal: str | None = None,
    ) -> int:
        """Put a record into the offline queue as given: a malformed or strange payload
        (``EVENT_DATA`` false, a string, no ``FIELDS``; an unknown event name; the ID of
        a deleted record) that no CRM action here would produce. Returns its queue ID."""
        target = self.portal(portal)
        return int(target.queue.upsert(client_id, connector_id, event_name, event_data, user_id).id)

    def queue_state(self, *, portal: str | None = None) -> list[dict[str, Any]]:
        """Every offline-queue record with its partition, lock and error flag."""
        target = self.portal(portal)
        queue = target.queue
        records = getattr(queue, "records", None)
        render = getattr(queue, "render", None)
        if records is None or render is None:
            return []
        rows = []
        for record in records():
            row = dict(render(record, full=True))
            row["APP_ID"] = record.app_id
            row["CONNECTOR_ID"] = record.connector_id
            rows.append(row)
        return rows

    def advance(self, seconds: float) -> float:
        """Move the test clock (all portals, OAuth) forward; returns the new time."""
        self.clock.advance(float(seconds))
        return self.clock.now()

    @locked
    def pull_command(
        self,
        command: str,
        *,
        client_id: str | None = None,
        portal: str | None = None,
        **options: Any,
    ) -> Any:
        """Delegate to the portal's Push&Pull hub: ``channel_expire``, ``config_expire``,
        ``server_restart``, ``drop``, ``refuse_websocket``, ``allow_websocket``,
        ``stall``, ``expire_channels``."""
        pull = self.portal(portal).pull
        if command == "channel_expire":
            if client_id is None:
                raise ValueError("channel_expire needs client_id")
            return pull.send_channel_expire(client_id, **options)
        if command == "config_expire":
            return pull.send_config_expire(client_id)
        if command == "server_restart":
            return pull.send_server_restart(client_id, **options)
        if command == "drop":
            return pull.drop_connections(client_id=client_id, **options)
        if command == "refuse_websocket":
            return pull.refuse_websocket(**options)
        if command == "allow_websocket":
            return pull.allow_websocket()
        if command == "stall":
            return pull.set_stall(options.get("mode"))
        if command == "expire_channels":
            return pull.expire_channels(**options)
        raise ValueError(f"unknown pull command {command!r}")

    @locked
    def state(self) -> dict[str, Any]:
        """A JSON-ready overview: portals, apps (no secrets), limits, faults, pull."""
        portals = []
        for p in self.portals.values():
            snapshot = getattr(p.pull, "snapshot", None)
            portals.append(
                {
                    "member_id": p.member_id,
                    "domain": p.domain,
                    "default": p is self.default_portal,
                    "plan": p.plan.name,
                    "limits": p.limits.snapshot(),
                    "queue_size": len(self.queue_state(portal=p.member_id)),
                    "pull": snapshot() if snapshot is not None else None,
                }
            )
        apps = [
            {"client_id": a.client_id, "scopes": list(a.scopes), "status": a.status}
            for a in self.oauth.apps.values()
        ]
        return {
            "time": self.clock.now(),
            "portals": portals,
            "apps": apps,
            "access_ttl": self.oauth.access_ttl,
            "requests": len(self.log),
        }
