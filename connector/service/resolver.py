"""An operator's resolution of a conflict, written to both sides and released.

``conflicts resolve ID``:

* ``--keep portal`` / ``--keep erp`` (optionally ``--field F`` …): that side's current
  value wins for those fields;
* ``--value FIELD=VALUE`` (repeatable): this value goes to both sides;
* ``--ignore``: both sides keep what they hold; the base becomes that accepted
  disagreement (:class:`connector.core.merge.Split`), so neither is pushed over the
  other until one of them changes again.

The portal is written first (``crm.<entity>.update`` with ``auth_connector``), then one
connector transaction writes the ERP (echo-free), re-bases ``sync_link`` so the merge
sees the outcome as agreed, closes the conflict (who, when, what) and applies the
portal's state through the drain's apply path — edits the portal folded into the held
record meanwhile arrive with it. Last, the held queue records are released
(``event.offline.get error=1`` by MESSAGE_ID, drained and cleared) and the held outbox
rows pushed. A crash after the commit leaves nothing stuck: the next drain releases a
closed conflict's records (``Holds.release_resolved``).

A delete-vs-edit conflict (the portal deleted the record while it was in conflict):
``--keep portal`` applies the delete; ``--keep erp`` adds the ERP row to the portal
again as a new record; ``--ignore`` closes it and leaves the ERP row unlinked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connector.adapters.store.conflict_rows import DELETED_FIELD
from connector.adapters.store.database import write_transaction
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import OutboxStore
from connector.adapters.store.push_state import (
    erp_values,
    load_records,
    rebase_fields,
    set_value_ids,
)
from connector.adapters.store.resolution_rows import (
    drop_link,
    linked_erp_key,
    mark_link_deleted,
    release_outbox,
    set_erp_columns,
    settle_held_outbox,
    unlink_erp_row,
)
from connector.core.field_values import canonical, to_erp, to_portal
from connector.core.merge import Split
from connector.core.push_commands import match_value_ids, multi_changes
from connector.errors import ConfigError, RecordError
from connector.service.drainer import Drainer
from connector.service.holds import Holds
from connector.service.pusher import Pusher
from connector.service.resolution import (
    Outcome,
    Resolution,
    choose_fields,
    close_conflict,
    load_conflict,
)


class Resolver:
    def __init__(self, drainer: Drainer, pusher: Pusher, holds: Holds) -> None:
        self.drainer = drainer
        self.pusher = pusher
        self.holds = holds
        self.portal = drainer.portal
        self.engine = drainer.engine
        self.mappings = drainer.mappings
        self.writer: ErpWriter = drainer.writer

    async def resolve(self, res: Resolution) -> Outcome:
        row = await asyncio.to_thread(load_conflict, self.engine, res.conflict_id)
        if row["status"] != "open":
            who = f" by {row['resolved_by']}" if row.get("resolved_by") else ""
            return Outcome(
                res.conflict_id,
                False,
                f"conflict {res.conflict_id} is already {row['status']}{who} "
                f"at {row['resolved_at']}; nothing to do",
            )
        m = self.mappings.get(row["entity"])
        if m is None:
            raise ConfigError(f"conflict {res.conflict_id}: no mapping names {row['entity']}")
        names = sorted(row["fields"] or {})
        chosen = choose_fields(res, names, m)
        b24_id = int(row["b24_id"])
        portal = await self._read(m.entity, m.portal_codes(), b24_id)
        with self.engine.connect() as conn:
            key = row["erp_key"] or linked_erp_key(conn, m.entity, b24_id)
            local = load_records(conn, self.writer, m, [str(key)])[str(key)]
        gone = "the portal" if portal is None else ("the ERP" if local.row is None else "")
        if gone and res.values:
            raise ConfigError(
                f"conflict {res.conflict_id}: the record is deleted in {gone}; "
                "use --keep portal|erp or --ignore"
            )
        if local.row is None and portal is not None:
            await self._settle_erp_gone(res, row, m, local, portal)
        elif DELETED_FIELD in chosen or portal is None:
            await asyncio.to_thread(self._settle_delete, res, row, m, local, chosen, portal)
        else:
            finals, portal = await self._write_portal(res, m, local, portal, chosen)
            await asyncio.to_thread(self._commit, res, row, m, local, portal, chosen, finals)
        remaining = [n for n in names if n not in chosen]
        if not remaining:
            await self.holds.release_resolved()
        await self.pusher.push_until_empty()
        verb = "ignored" if res.ignore else "resolved"
        done = ", ".join(chosen)
        tail = f"; still open: {', '.join(remaining)}" if remaining else ""
        return Outcome(res.conflict_id, True, f"conflict {res.conflict_id} {verb}: {done}{tail}")

    async def _read(self, entity: str, codes: list[str], b24_id: int) -> Mapping[str, Any] | None:
        answer = await self.portal.call(
            f"{entity}.list",
            {"filter": {"ID": b24_id}, "select": codes, "order": {"ID": "ASC"}, "start": -1},
        )
        rows = [r for r in (answer.result or []) if isinstance(r, Mapping)]
        return rows[0] if rows else None

    async def _write_portal(
        self,
        res: Resolution,
        m: Any,
        local: Any,
        portal: Mapping[str, Any],
        chosen: list[str],
    ) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """Decide each field's final value; send the portal what it lacks; its new state."""
        b24_id = int(portal["ID"])
        side = self.writer._portal_side(m, b24_id, portal)
        portal_cmp = {
            k: self.writer._multi_key(v) if isinstance(v, dict) else v for k, v in side.items()
        }
        erp_cmp = erp_values(m, local) if local.row is not None else {}
        finals: dict[str, Any] = {}
        send: dict[str, Any] = {}
        for name in chosen:
            fm = m.field_by_portal(name)
            if res.ignore:
                finals[name] = Split(portal_cmp.get(name), erp_cmp.get(name))
            elif res.values:
                assert fm is not None
                try:
                    raw = to_erp(fm, res.values[name], entity=m.entity, record_id=b24_id)
                except RecordError as err:
                    raise ConfigError(f"--value {name}: {err.reason}") from None
                finals[name] = canonical(fm, raw)
            elif res.keep == "portal":
                finals[name] = portal_cmp.get(name)
            else:
                finals[name] = erp_cmp.get(name)
            if res.ignore or finals[name] == portal_cmp.get(name):
                continue
            if fm is not None:
                send[name] = to_portal(fm, finals[name], entity=m.entity, record_id=b24_id)
            else:  # a multi-field kept from the ERP: its rows, by value ID
                items = multi_changes(local.children.get(name, []), side.get(name) or {})
                if items:
                    send[name] = items
        if send:
            await self.portal.call(
                f"{m.entity}.update",
                {"id": b24_id, "fields": send, "params": {"REGISTER_SONET_EVENT": "N"}},
            )
            fresh = await self._read(m.entity, m.portal_codes(), b24_id)
            portal = fresh if fresh is not None else portal
        return finals, portal

    def _commit(
        self,
        res: Resolution,
        row: Mapping[str, Any],
        m: Any,
        local: Any,
        portal: Mapping[str, Any],
        chosen: list[str],
        finals: Mapping[str, Any],
    ) -> None:
        now = datetime.now(UTC)
        b24_id = int(row["b24_id"])
        erp_cmp = erp_values(m, local) if local.row is not None else {}
        with write_transaction(self.engine) as conn:
            if local.row is not None and res.values:
                parent = self.writer.table(m.table)
                columns = {
                    m.field_by_portal(n).column: self.writer._db_value(conn, v)
                    for n, v in finals.items()
                    if erp_cmp.get(n) != v
                }
                if columns:
                    set_erp_columns(conn, parent, m.key, local.row[m.key], columns)
            # The base that makes the merge see the outcome: kept from the portal, the ERP
            # "had not moved" (so the portal's value flows in); otherwise both hold it.
            rebase = {n: (erp_cmp.get(n) if res.keep == "portal" else finals[n]) for n in chosen}
            rebase_fields(conn, self.writer, m, b24_id, rebase, now)
            if res.keep == "erp":  # ERP rows the portal now holds: their new value IDs
                side = self.writer._portal_side(m, b24_id, portal)
                for mf in m.multifields:
                    if mf.portal in chosen:
                        found = match_value_ids(local.children.get(mf.portal, []), side[mf.portal])
                        set_value_ids(conn, self.writer, mf.table, found)
            close_conflict(conn, res, row, chosen, now)
            self.writer.apply_many(conn, m, [(b24_id, portal, None)], now=now)
            release_outbox(conn, m.entity, local.erp_key, False)

    def _settle_delete(
        self,
        res: Resolution,
        row: Mapping[str, Any],
        m: Any,
        local: Any,
        chosen: list[str],
        portal: Mapping[str, Any] | None,
    ) -> None:
        now = datetime.now(UTC)
        b24_id = int(row["b24_id"])
        with write_transaction(self.engine) as conn:
            close_conflict(conn, res, row, list(row["fields"] or {}), now)
            if res.keep == "portal" and portal is None:
                self.writer.apply_many(conn, m, [(b24_id, None, None)], now=now)
            elif res.keep == "erp" and local.row is not None and portal is None:
                parent = self.writer.table(m.table)  # the portal lost it: add it again
                unlink_erp_row(conn, parent, m, local.row[m.key], b24_id)
                OutboxStore.enqueue(conn, m.entity, local.erp_key, ["(re-added)"])
            elif portal is None and local.row is not None:  # ignored: the ERP row stays,
                parent = self.writer.table(m.table)  # unlinked from the record that is gone
                unlink_erp_row(conn, parent, m, local.row[m.key], b24_id)
            release_outbox(conn, m.entity, local.erp_key, res.ignore)  # unlinked: stays

    async def _settle_erp_gone(
        self,
        res: Resolution,
        row: Mapping[str, Any],
        m: Any,
        local: Any,
        portal: Mapping[str, Any],
    ) -> None:
        """The ERP deleted the row while it was in conflict: keep erp applies that delete to
        the portal (under delete_policy delete; otherwise the portal record is kept and
        unlinked), keep portal brings the portal's record back into the ERP, ignore unlinks."""
        from connector.core.mapping_model import DeletePolicy

        b24_id = int(row["b24_id"])
        if res.keep == "erp" and m.delete_policy is DeletePolicy.DELETE:
            await self.portal.call(f"{m.entity}.delete", {"id": b24_id})
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            close_conflict(conn, res, row, list(row["fields"] or {}), now)
            if res.keep == "portal":
                drop_link(conn, m.entity, b24_id)
                self.writer.apply_many(conn, m, [(b24_id, portal, None)], now=now)
            else:
                mark_link_deleted(conn, m.entity, b24_id, now)
            # the held ERP delete is settled by this resolution
            settle_held_outbox(conn, m.entity, local.erp_key, f"settled: {res.mode}", now)
