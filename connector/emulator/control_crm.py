"""CRM data for tests and demos, part of the control API: act as a person in the
portal's UI (``ui_add`` / ``ui_update`` / ``ui_delete``, which fire events and the
request-end push like any request) and seed deterministic records (``seed_crm``; the
same seed gives the same data). Mixed into ``control.ControlAPI`` as
:class:`CrmControl`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from connector.emulator.context import CallContext
from connector.emulator.control_base import ControlBase, locked

if TYPE_CHECKING:
    from connector.emulator.portal import Portal

ENTITIES = ("company", "contact", "lead", "deal")
_FIRST = (
    "Anna",
    "Boris",
    "Vera",
    "Gleb",
    "Daria",
    "Egor",
    "Zoya",
    "Ivan",
    "Kira",
    "Lev",
    "Maria",
    "Nikita",
    "Olga",
    "Pavel",
    "Rita",
    "Sergey",
    "Tanya",
    "Uliana",
)
_LAST = (
    "Ivanova",
    "Petrov",
    "Sidorova",
    "Kuznetsov",
    "Smirnova",
    "Popov",
    "Volkova",
    "Sokolov",
    "Lebedeva",
    "Kozlov",
    "Novikova",
    "Morozov",
)
_WORDS = (
    "Alpha",
    "Borealis",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orchid",
    "Pioneer",
)
_KINDS = ("LLC", "JSC", "Ltd", "Group", "Trade", "Logistics")


class CrmControl(ControlBase):
    """UI-user CRM actions and seeding (see the module docstring)."""

    def ui_context(self, user_id: int = 1, *, portal: str | None = None) -> CallContext:
        """The context of a person working in the portal's UI (no app, no connector)."""
        target = self.portal(portal)
        user = target.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id} on {target.domain}")
        return CallContext(client_id=None, user_id=user.id, is_admin=user.is_admin)

    def _crm_call(
        self, target: Portal, ctx: CallContext, action: str, entity: str, *args: Any
    ) -> Any:
        entity = _entity(entity)
        handler = getattr(target.crm, action, None)
        if handler is None:
            raise RuntimeError(f"the CRM store has no {action}()")
        return handler(ctx, entity, *args)

    @locked
    def ui_add(
        self, entity: str, fields: dict[str, Any], *, user_id: int = 1, portal: str | None = None
    ) -> int:
        """Add an entity as a UI user; fires its events and the request-end push."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            new_id = self._crm_call(target, ctx, "add", entity, fields)
        finally:
            self.finish_request(target, ctx)
        return int(new_id)

    @locked
    def ui_update(
        self,
        entity: str,
        entity_id: int,
        fields: dict[str, Any],
        *,
        user_id: int = 1,
        portal: str | None = None,
    ) -> None:
        """Update an entity as a UI user."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            self._crm_call(target, ctx, "update", entity, int(entity_id), fields)
        finally:
            self.finish_request(target, ctx)

    @locked
    def ui_delete(
        self, entity: str, entity_id: int, *, user_id: int = 1, portal: str | None = None
    ) -> None:
        """Delete an entity as a UI user."""
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        try:
            self._crm_call(target, ctx, "delete", entity, int(entity_id))
        finally:
            self.finish_request(target, ctx)

    @locked
    def seed_crm(
        self,
        *,
        companies: int = 0,
        contacts: int = 0,
        leads: int = 0,
        deals: int = 0,
        seed: int | None = None,
        user_id: int = 1,
        portal: str | None = None,
    ) -> dict[str, list[int]]:
        """Create entities deterministically (same seed → same data), as a UI user.

        Returns the new IDs per entity. Contacts and deals link to seeded companies.
        """
        rng = random.Random(self.seed if seed is None else seed)
        target = self.portal(portal)
        ctx = self.ui_context(user_id, portal=portal)
        made: dict[str, list[int]] = {e: [] for e in ENTITIES}
        try:
            for fields in seed_records(rng, "company", companies, []):
                made["company"].append(int(self._crm_call(target, ctx, "add", "company", fields)))
            for entity, count in (("contact", contacts), ("lead", leads), ("deal", deals)):
                for fields in seed_records(rng, entity, count, made["company"]):
                    made[entity].append(int(self._crm_call(target, ctx, "add", entity, fields)))
        finally:
            self.finish_request(target, ctx)
        return made


def _entity(name: str) -> str:
    entity = name.lower().removeprefix("crm.")
    if entity not in ENTITIES:
        raise ValueError(f"unknown CRM entity {name!r}; use one of {', '.join(ENTITIES)}")
    return entity


def seed_records(
    rng: random.Random, entity: str, count: int, company_ids: list[int]
) -> list[dict[str, Any]]:
    """``count`` field sets for ``entity``, drawn from ``rng`` (deterministic)."""
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        phone = f"+7 9{rng.randrange(10**8, 10**9):09d}"
        email = f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@example.test"
        multi = {
            "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}],
            "EMAIL": [{"VALUE": email, "VALUE_TYPE": "WORK"}],
        }
        company = rng.choice(company_ids) if company_ids else None
        if entity == "company":
            title = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_KINDS)}"
            rows.append(
                {
                    "TITLE": title,
                    "COMPANY_TYPE": "CUSTOMER",
                    "COMMENTS": f"Seeded #{rng.randrange(10**6)}",
                    **multi,
                }
            )
        elif entity == "contact":
            row: dict[str, Any] = {"NAME": first, "LAST_NAME": last, **multi}
            if company is not None:
                row["COMPANY_ID"] = company
            rows.append(row)
        elif entity == "lead":
            rows.append(
                {
                    "TITLE": f"Lead from {first} {last}",
                    "NAME": first,
                    "LAST_NAME": last,
                    "STATUS_ID": "NEW",
                    **multi,
                }
            )
        else:
            deal: dict[str, Any] = {
                "TITLE": f"Deal {rng.choice(_WORDS)}",
                "STAGE_ID": "NEW",
                "OPPORTUNITY": rng.randrange(1, 1000) * 100,
                "CURRENCY_ID": "USD",
            }
            if company is not None:
                deal["COMPANY_ID"] = company
            rows.append(deal)
    return rows
