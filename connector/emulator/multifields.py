"""CRM multi-fields: PHONE, EMAIL, WEB and IM on leads, contacts and companies.

A multi-field is an array of ``{ID, VALUE_TYPE, VALUE, TYPE_ID}``. Writes follow the
portal's rules (digest §9):

* an item without ``ID`` is **added** (it never replaces existing values);
* an item with the ``ID`` of one of the entity's values **changes** it;
* an item with that ``ID`` and an empty ``VALUE`` **deletes** it;
* an ``ID`` the entity does not own is ignored.

Items may come as a list or as a PHP map (``{"n0": {...}, "0": {...}}``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.emulator.crm_fields import MULTI_TITLES, crm_error
from connector.emulator.filter_ops import as_list

VALUE_TYPES: dict[str, tuple[str, ...]] = {
    "PHONE": ("WORK", "MOBILE", "FAX", "HOME", "PAGER", "MAILING", "OTHER"),
    "EMAIL": ("WORK", "HOME", "MAILING", "OTHER"),
    "WEB": ("WORK", "HOME", "FACEBOOK", "VK", "LIVEJOURNAL", "TWITTER", "OTHER"),
    "IM": ("SKYPE", "ICQ", "MSN", "JABBER", "TELEGRAM", "VIBER", "IMOL", "OTHER"),
}
DEFAULT_VALUE_TYPE = {"PHONE": "WORK", "EMAIL": "WORK", "WEB": "WORK", "IM": "OTHER"}


@dataclass
class MultiValue:
    """One stored value; ``id`` is unique across the portal (``b_crm_field_multi``)."""

    id: int
    type_id: str
    value_type: str
    value: str

    def render(self) -> dict[str, str]:
        return {
            "ID": str(self.id),
            "VALUE_TYPE": self.value_type,
            "VALUE": self.value,
            "TYPE_ID": self.type_id,
        }


def _value_type(type_id: str, raw: object, fallback: str) -> str:
    value_type = str(raw or "").strip().upper() or fallback
    if value_type not in VALUE_TYPES[type_id]:
        raise crm_error(f'Invalid value type "{value_type}" for field "{type_id}".')
    return value_type


def _check_value(type_id: str, value: str) -> None:
    if type_id == "EMAIL" and ("@" not in value or value.startswith("@") or value.endswith("@")):
        raise crm_error(
            f'Field "{MULTI_TITLES[type_id]}" contains an invalid e-mail address: "{value}".'
        )


def apply_changes(
    type_id: str, current: list[MultiValue], incoming: Any, next_id: Callable[[], int]
) -> list[MultiValue]:
    """The entity's values of ``type_id`` after a write of ``incoming`` items.

    Validates everything before changing anything, so a bad item leaves ``current``
    untouched (the caller replaces the list with the result).
    """
    if incoming is None or incoming == "":
        return current
    if not isinstance(incoming, list | tuple | dict):
        raise crm_error(f'Field "{type_id}" must be an array of values.')
    result = [MultiValue(v.id, v.type_id, v.value_type, v.value) for v in current]
    by_id = {v.id: v for v in result}
    for item in as_list(incoming):
        if not isinstance(item, dict):
            raise crm_error(f'Field "{type_id}" must be an array of values.')
        item = {str(k).upper(): v for k, v in item.items()}
        value = str(item.get("VALUE") or "").strip()
        raw_id = str(item.get("ID") or "").strip()
        if raw_id.isdigit() and int(raw_id) > 0:
            target = by_id.get(int(raw_id))
            if target is None:
                continue
            if value == "":
                result.remove(target)
                del by_id[target.id]
                continue
            _check_value(type_id, value)
            target.value = value
            target.value_type = _value_type(type_id, item.get("VALUE_TYPE"), target.value_type)
            continue
        if value == "":
            continue
        _check_value(type_id, value)
        value_type = _value_type(type_id, item.get("VALUE_TYPE"), DEFAULT_VALUE_TYPE[type_id])
        added = MultiValue(next_id(), type_id, value_type, value)
        result.append(added)
        by_id[added.id] = added
    return result
