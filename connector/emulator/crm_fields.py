"""Field definitions of crm.lead/contact/company/deal and how values are stored and shown.

Each entity has an :class:`EntityType` with its standard fields (:class:`FieldDef`).
``coerce`` turns an incoming REST value into the stored Python value (raising the CRM
error envelope ``{"error": "", "error_description": ...}`` on bad input) and ``render``
turns a stored value into what Bitrix24 answers: IDs and most scalars as strings,
money as ``"1500.00"``, flags ``"Y"``/``"N"``, date-times ISO-8601 with the portal's
offset, empty as ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.emulator.clock import Clock
from connector.emulator.filter_ops import to_epoch
from connector.emulator.rest_errors import RestError

MULTI_FIELDS = ("PHONE", "EMAIL", "WEB", "IM")
MULTI_TITLES = {"PHONE": "Phone", "EMAIL": "E-mail", "WEB": "Website", "IM": "Messenger"}

REF_TYPES = frozenset({"integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_category"})


def crm_error(description: str) -> RestError:
    """A CRM validation error: HTTP 400 with an empty code, like the real CRM."""
    return RestError("", description, 400)


@dataclass(frozen=True)
class FieldDef:
    """One standard field, as ``crm.<entity>.fields`` describes it."""

    name: str
    type: str
    title: str
    required: bool = False
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    status_type: str | None = None

    @property
    def kind(self) -> str:
        """How filters compare this field (``filter_ops.normalise`` kinds)."""
        if self.type in REF_TYPES:
            return "int"
        if self.type == "double":
            return "float"
        if self.type in ("datetime", "date"):
            return "date"
        return "str"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "type": self.type,
            "isRequired": self.required,
            "isReadOnly": self.read_only,
            "isImmutable": self.immutable,
            "isMultiple": self.multiple,
            "isDynamic": False,
            "title": self.title,
        }
        if self.status_type:
            info["statusType"] = self.status_type
        return info


def _f(name: str, type_: str, title: str, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, title, **kw)


def _ro(name: str, type_: str, title: str) -> FieldDef:
    return FieldDef(name, type_, title, read_only=True)


_COMMON_TAIL = [
    _f("ASSIGNED_BY_ID", "user", "Responsible person"),
    _ro("CREATED_BY_ID", "user", "Created by"),
    _ro("MODIFY_BY_ID", "user", "Modified by"),
    _ro("DATE_CREATE", "datetime", "Created on"),
    _ro("DATE_MODIFY", "datetime", "Modified on"),
    _f("OPENED", "char", "Available to everyone"),
    _f("COMMENTS", "string", "Comment"),
    _f("ORIGINATOR_ID", "string", "External source"),
    _f("ORIGIN_ID", "string", "Item ID in data source"),
    _f("ORIGIN_VERSION", "string", "Original version"),
    _f("UTM_SOURCE", "string", "Ad system"),
    _f("UTM_MEDIUM", "string", "Traffic type"),
    _f("UTM_CAMPAIGN", "string", "Ad campaign UTM"),
    _f("UTM_CONTENT", "string", "Campaign contents"),
    _f("UTM_TERM", "string", "Campaign search term"),
]
_PERSON = [
    _f("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
    _f("NAME", "string", "First name"),
    _f("SECOND_NAME", "string", "Middle name"),
    _f("LAST_NAME", "string", "Last name"),
    _f("BIRTHDATE", "date", "Date of birth"),
    _f("POST", "string", "Position"),
    _f("ADDRESS", "string", "Address"),
]
_COMM_FLAGS = [
    _ro("HAS_PHONE", "char", "Has phone"),
    _ro("HAS_EMAIL", "char", "Has email"),
    _ro("HAS_IMOL", "char", "Has Open Channel"),
]
_MULTI = [FieldDef(n, "crm_multifield", MULTI_TITLES[n], multiple=True) for n in MULTI_FIELDS]
_MONEY = [
    _f("CURRENCY_ID", "crm_currency", "Currency"),
    _f("OPPORTUNITY", "double", "Total"),
    _f("IS_MANUAL_OPPORTUNITY", "char", "Manual amount"),
]

LEAD_FIELDS = [
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Lead name"),
    *_PERSON,
    _f("COMPANY_TITLE", "string", "Company name"),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Source information"),
    _f("STATUS_ID", "crm_status", "Status", status_type="STATUS"),
    _f("STATUS_DESCRIPTION", "string", "Status information"),
    _ro("STATUS_SEMANTIC_ID", "string", "Status details"),
    *_MONEY,
    *_COMM_FLAGS,
    _f("COMPANY_ID", "crm_company", "Company"),
    _f("CONTACT_ID", "crm_contact", "Contact"),
    _ro("IS_RETURN_CUSTOMER", "char", "Repeat lead"),
    _ro("DATE_CLOSED", "datetime", "Closed"),
    *_COMMON_TAIL,
    *_MULTI,
]
CONTACT_FIELDS = [
    _ro("ID", "integer", "ID"),
    *_PERSON,
    _f("TYPE_ID", "crm_status", "Contact type", status_type="CONTACT_TYPE"),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Source information"),
    _f("EXPORT", "char", "Included in export"),
    *_COMM_FLAGS,
    _f("COMPANY_ID", "crm_company", "Company"),
    _ro("LEAD_ID", "crm_lead", "Lead"),
    *_COMMON_TAIL,
    *_MULTI,
]
COMPANY_FIELDS = [
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Company name", required=True),
    _f("COMPANY_TYPE", "crm_status", "Company type", status_type="COMPANY_TYPE"),
    _f("ADDRESS", "string", "Address"),
    _f("BANKING_DETAILS", "string", "Payment details"),
    _f("INDUSTRY", "crm_status", "Industry", status_type="INDUSTRY"),
    _f("EMPLOYEES", "crm_status", "Employees", status_type="EMPLOYEES"),
    _f("CURRENCY_ID", "crm_currency", "Currency"),
    _f("REVENUE", "double", "Annual revenue"),
    _f("IS_MY_COMPANY", "char", "My company"),
    *_COMM_FLAGS,
    _ro("LEAD_ID", "crm_lead", "Lead"),
    *_COMMON_TAIL,
    *_MULTI,
]
DEAL_FIELDS = [
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Name"),
    _f("TYPE_ID", "crm_status", "Type", status_type="DEAL_TYPE"),
    FieldDef("CATEGORY_ID", "crm_category", "Pipeline", immutable=True),
    _f("STAGE_ID", "crm_status", "Stage", status_type="DEAL_STAGE"),
    _ro("STAGE_SEMANTIC_ID", "string", "Stage group"),
    _ro("IS_NEW", "char", "New deal"),
    _f("PROBABILITY", "integer", "Probability"),
    *_MONEY,
    _f("TAX_VALUE", "double", "Tax rate"),
    _f("COMPANY_ID", "crm_company", "Company"),
    _f("CONTACT_ID", "crm_contact", "Contact"),
    _f("BEGINDATE", "date", "Start date"),
    _f("CLOSEDATE", "date", "Estimated close date"),
    _f("CLOSED", "char", "Closed"),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Source information"),
    _ro("LEAD_ID", "crm_lead", "Lead"),
    _f("ADDITIONAL_INFO", "string", "Additional information"),
    *_COMMON_TAIL,
]


@dataclass(frozen=True)
class EntityType:
    """One CRM entity kind: ``lead`` → ``crm.lead.*``, ``ONCRMLEAD*``, ``CRM_LEAD`` UFs."""

    name: str
    fields: dict[str, FieldDef]
    defaults: dict[str, Any]
    default_title: str | None = None

    @property
    def upper(self) -> str:
        return self.name.upper()

    @property
    def uf_entity_id(self) -> str:
        return f"CRM_{self.upper}"

    @property
    def multi_fields(self) -> tuple[str, ...]:
        return tuple(n for n in MULTI_FIELDS if n in self.fields)

    def event(self, action: str) -> str:
        return f"ONCRM{self.upper}{action.upper()}"


def _entity(
    name: str, fields: list[FieldDef], defaults: dict[str, Any], default_title: str | None = None
) -> EntityType:
    return EntityType(name, {f.name: f for f in fields}, defaults, default_title)


ENTITY_TYPES: dict[str, EntityType] = {
    "lead": _entity(
        "lead",
        LEAD_FIELDS,
        {
            "STATUS_ID": "NEW",
            "OPENED": "Y",
            "CURRENCY_ID": "RUB",
            "OPPORTUNITY": 0.0,
            "IS_MANUAL_OPPORTUNITY": "N",
            "IS_RETURN_CUSTOMER": "N",
        },
        "Lead #{id}",
    ),
    "contact": _entity(
        "contact", CONTACT_FIELDS, {"TYPE_ID": "CLIENT", "OPENED": "Y", "EXPORT": "Y"}
    ),
    "company": _entity(
        "company",
        COMPANY_FIELDS,
        {
            "COMPANY_TYPE": "CUSTOMER",
            "OPENED": "Y",
            "CURRENCY_ID": "RUB",
            "REVENUE": 0.0,
            "IS_MY_COMPANY": "N",
        },
    ),
    "deal": _entity(
        "deal",
        DEAL_FIELDS,
        {
            "TYPE_ID": "SALE",
            "CATEGORY_ID": 0,
            "STAGE_ID": "NEW",
            "OPENED": "Y",
            "CLOSED": "N",
            "CURRENCY_ID": "RUB",
            "OPPORTUNITY": 0.0,
            "IS_MANUAL_OPPORTUNITY": "N",
            "IS_NEW": "Y",
        },
        "Deal #{id}",
    ),
}

STATUS_SEMANTICS = {"CONVERTED": "S", "WON": "S", "JUNK": "F", "LOSE": "F"}


def semantic_of(stage: object) -> str:
    """``S`` success, ``F`` failure, ``P`` in progress (STATUS/STAGE_SEMANTIC_ID)."""
    code = str(stage or "")
    return STATUS_SEMANTICS.get(code.split(":")[-1], "P")


def coerce(fdef: FieldDef, value: Any) -> Any:
    """Incoming REST value → stored value (``None`` for empty)."""
    if value is None or value == "" or (isinstance(value, list) and not value):
        return None
    if isinstance(value, dict | list):
        raise crm_error(f'Field "{fdef.name}" must be a scalar value.')
    text = str(value).strip()
    if fdef.type in REF_TYPES:
        try:
            number = int(float(text))
        except ValueError:
            raise crm_error(f'Field "{fdef.name}" must be an integer: "{text}".') from None
        return number if number != 0 or fdef.type in ("integer", "crm_category") else None
    if fdef.type == "double":
        try:
            return float(text.replace(",", "."))
        except ValueError:
            raise crm_error(f'Field "{fdef.name}" must be a number: "{text}".') from None
    if fdef.type == "char":
        return "Y" if text.upper() in ("Y", "1", "TRUE") else "N"
    if fdef.type in ("datetime", "date"):
        epoch = to_epoch(text)
        if epoch is None:
            raise crm_error(f'Field "{fdef.name}" has an invalid date: "{text}".')
        return text[:10] if fdef.type == "date" else epoch
    return str(value)


def render(fdef: FieldDef, stored: Any, clock: Clock) -> Any:
    """Stored value → the JSON Bitrix24 returns."""
    if fdef.type == "date":
        return "" if stored is None else f"{stored}T00:00:00{clock.iso(0)[-6:]}"
    if stored is None:
        return None
    if fdef.type == "datetime":
        return clock.iso(float(stored))
    if fdef.type == "double":
        return f"{float(stored):.2f}"
    return str(stored)
