"""What the pusher sends: multi-field items by value ID, value IDs matched after a write."""

from __future__ import annotations

from pathlib import Path

from connector.adapters.mapping_files import load_mappings
from connector.core.push_commands import ChildRow, add_fields, match_value_ids, multi_changes

COMPANY = load_mappings(Path(__file__).resolve().parents[2] / "mappings").entities["crm.company"]


def test_multi_changes_update_by_id_delete_by_id_and_add_without_id() -> None:
    """A changed value keeps its ID, a value the ERP removed goes with an empty VALUE, a
    new ERP row is sent without an ID, an unchanged value is not sent at all."""
    children = [
        ChildRow(1, 10, "WORK", "+1 555"),  # unchanged
        ChildRow(2, 11, "MOBILE", "+1 777"),  # changed (was +1 666)
        ChildRow(3, None, "HOME", "+1 888"),  # new in the ERP
    ]
    portal = {10: ("WORK", "+1 555"), 11: ("MOBILE", "+1 666"), 12: ("WORK", "+1 999")}
    assert multi_changes(children, portal) == [
        {"ID": "11", "VALUE": "+1 777", "VALUE_TYPE": "MOBILE"},
        {"VALUE": "+1 888", "VALUE_TYPE": "HOME"},
        {"ID": "12", "VALUE": ""},
    ]


def test_multi_changes_keep_the_portals_type_when_the_erp_left_it_empty() -> None:
    """An ERP row without a value type does not fight the portal's default type."""
    assert multi_changes([ChildRow(1, 10, "", "+1 555")], {10: ("WORK", "+1 555")}) == []


def test_match_value_ids_prefers_the_same_type_then_the_same_value() -> None:
    """New portal values go to the ERP rows that lack an ID; owned IDs are never reused."""
    children = [
        ChildRow(1, 10, "WORK", "a@x.test"),
        ChildRow(2, None, "HOME", "b@x.test"),
        ChildRow(3, None, "", "b@x.test"),
        ChildRow(4, None, "WORK", "c@x.test"),
    ]
    portal = {10: ("WORK", "a@x.test"), 20: ("WORK", "b@x.test"), 21: ("HOME", "b@x.test")}
    assert match_value_ids(children, portal) == {2: 21, 3: 20}


def test_add_fields_carry_the_erp_key_and_skip_empty_and_to_erp_fields() -> None:
    """An add names the ERP key in ORIGINATOR_ID/ORIGIN_ID, sends only fields with a value
    that may reach the portal, and adds every multi-field row without an ID."""
    values = {"TITLE": "Acme", "COMMENTS": None, "ASSIGNED_BY_ID": 5}
    fields = add_fields(
        COMPANY,
        values,
        {"PHONE": [ChildRow(1, None, "WORK", "+1 555")]},
        originator="erp1",
        origin_id="42",
    )
    assert fields == {
        "TITLE": "Acme",
        "PHONE": [{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}],
        "ORIGINATOR_ID": "erp1",
        "ORIGIN_ID": "42",
    }
