"""``UF_CRM_*`` user fields: definitions and values (the REST methods
``crm.<entity>.userfield.*`` are in ``crm_userfield_methods``).

A user field belongs to one entity type (``ENTITY_ID`` ``CRM_LEAD`` …). Its name is
always prefixed ``UF_CRM_`` (added when missing) and is at most 20 characters. Values
are stored per record; unknown ``UF_*`` keys in a write are ignored, as on the portal.

Python API: ``CrmStore.add_userfield(entity, "UF_CRM_ERP_CODE", "string")``.
REST (in ``crm_userfield_methods``): ``crm.<entity>.userfield.add`` (``fields{FIELD_NAME,
USER_TYPE_ID, MULTIPLE, MANDATORY, LIST, XML_ID, SORT, EDIT_FORM_LABEL}``), ``.list``,
``.get``, ``.update``, ``.delete``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.emulator.crm_fields import crm_error
from connector.emulator.filter_ops import as_list, to_epoch
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.clock import Clock

USER_TYPES = (
    "string",
    "integer",
    "double",
    "boolean",
    "date",
    "datetime",
    "enumeration",
    "url",
    "money",
    "address",
    "file",
    "employee",
    "crm",
    "crm_status",
)
_NAME = re.compile(r"^UF_CRM_[A-Z0-9_]+$")
MAX_NAME = 20


@dataclass
class UserField:
    """One ``b_user_field`` row for a CRM entity."""

    id: int
    entity_id: str
    field_name: str
    user_type_id: str
    multiple: bool = False
    mandatory: bool = False
    xml_id: str = ""
    sort: int = 100
    label: str = ""
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return {
            "integer": "int",
            "double": "float",
            "date": "date",
            "datetime": "date",
            "employee": "int",
        }.get(self.user_type_id, "str")

    def describe(self) -> dict[str, Any]:
        """The ``crm.<entity>.fields`` entry of this field."""
        info: dict[str, Any] = {
            "type": self.user_type_id,
            "isRequired": self.mandatory,
            "isReadOnly": False,
            "isImmutable": False,
            "isMultiple": self.multiple,
            "isDynamic": True,
            "title": self.field_name,
            "listLabel": self.label or self.field_name,
            "formLabel": self.label or self.field_name,
            "filterLabel": self.label or self.field_name,
        }
        if self.user_type_id == "enumeration":
            info["items"] = [{"ID": str(i["ID"]), "VALUE": i["VALUE"]} for i in self.items]
        return info

    def as_row(self) -> dict[str, Any]:
        """The ``crm.<entity>.userfield.get/list`` row."""
        return {
            "ID": str(self.id),
            "ENTITY_ID": self.entity_id,
            "FIELD_NAME": self.field_name,
            "USER_TYPE_ID": self.user_type_id,
            "XML_ID": self.xml_id or None,
            "SORT": str(self.sort),
            "MULTIPLE": "Y" if self.multiple else "N",
            "MANDATORY": "Y" if self.mandatory else "N",
            "SHOW_FILTER": "N",
            "SHOW_IN_LIST": "Y",
            "EDIT_IN_LIST": "Y",
            "IS_SEARCHABLE": "N",
            "EDIT_FORM_LABEL": self.label or self.field_name,
            "LIST_COLUMN_LABEL": self.label or self.field_name,
            "LIST": [
                {
                    "ID": str(i["ID"]),
                    "VALUE": i["VALUE"],
                    "SORT": str(i["SORT"]),
                    "DEF": i["DEF"],
                    "XML_ID": i["XML_ID"],
                }
                for i in self.items
            ]
            if self.user_type_id == "enumeration"
            else None,
        }

    def _one(self, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, dict | list):
            raise crm_error(f'Field "{self.field_name}" must be a scalar value.')
        text = str(value).strip()
        try:
            if self.user_type_id in ("integer", "employee"):
                return int(float(text))
            if self.user_type_id == "double":
                return float(text.replace(",", "."))
        except ValueError:
            raise crm_error(f'Field "{self.field_name}" has an invalid value: "{text}".') from None
        if self.user_type_id == "boolean":
            return 1 if text.upper() in ("1", "Y", "TRUE") else 0
        if self.user_type_id in ("date", "datetime"):
            if to_epoch(text) is None:
                raise crm_error(f'Field "{self.field_name}" has an invalid date: "{text}".')
            return text[:10] if self.user_type_id == "date" else to_epoch(text)
        if self.user_type_id == "enumeration":
            ids = {str(i["ID"]) for i in self.items}
            if text not in ids:
                raise crm_error(f'Field "{self.field_name}" has an invalid value: "{text}".')
        return text

    def coerce(self, value: Any) -> Any:
        """Incoming value → stored (a list when multiple, empties dropped)."""
        if self.multiple:
            values = as_list(value) if isinstance(value, list | tuple | dict) else [value]
            return [v for v in (self._one(x) for x in values) if v is not None]
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return self._one(value)

    def render(self, stored: Any, clock: Clock) -> Any:
        if self.multiple:
            return [self._render_one(v, clock) for v in (stored or [])]
        return None if stored is None else self._render_one(stored, clock)

    def _render_one(self, value: Any, clock: Clock) -> Any:
        if self.user_type_id == "datetime":
            return clock.iso(float(value))
        if self.user_type_id == "date":
            return f"{value}T00:00:00{clock.iso(0)[-6:]}"
        if self.user_type_id == "double":
            return float(value)
        return str(value)


def normalise_name(raw: object) -> str:
    """``ERP_CODE`` → ``UF_CRM_ERP_CODE``; validates characters and length."""
    name = str(raw or "").strip().upper()
    if name == "":
        raise RestError("ERROR_CORE", "FIELD_NAME is required", 400)
    if not name.startswith("UF_CRM_"):
        name = "UF_CRM_" + name
    if not _NAME.match(name):
        raise RestError("ERROR_CORE", f'Invalid field name "{name}": use A-Z, 0-9 and _', 400)
    if len(name) > MAX_NAME:
        raise RestError(
            "ERROR_CORE", f'Field name "{name}" is longer than {MAX_NAME} characters', 400
        )
    return name
