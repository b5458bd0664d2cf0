"""Multi-fields PHONE, EMAIL, WEB, IM: add without ID, change by ID, delete by ID with
an empty VALUE, values without ID added not replacing (digest §9)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.context import CallContext
from connector.emulator.portal import Portal
from connector.emulator.registry import registry
from connector.emulator.rest_errors import RestError


def call(portal: Portal, method: str, params: dict[str, Any]) -> Any:
    entry = registry.lookup(method)
    assert entry is not None, method
    ctx = CallContext(client_id="local.app1", user_id=1, is_admin=True)
    return entry[0](portal, ctx, params).result


@pytest.fixture
def portal() -> Portal:
    return Portal()


def phones(portal: Portal, entity: str, entity_id: int) -> list[tuple[str, str]]:
    return [
        (v["VALUE"], v["VALUE_TYPE"]) for v in portal.crm.get(entity, entity_id).get("PHONE", [])
    ]


@pytest.mark.parametrize("entity", ["lead", "contact", "company"])
def test_add_returns_values_with_ids_and_type(portal: Portal, entity: str) -> None:
    """Values are arrays of {ID, VALUE_TYPE, VALUE, TYPE_ID} with string IDs."""
    new_id = call(
        portal,
        f"crm.{entity}.add",
        {
            "fields": {
                "TITLE": "t",
                "PHONE": [{"VALUE": "+7 900", "VALUE_TYPE": "MOBILE"}],
                "EMAIL": [{"VALUE": "a@b.test"}],
                "WEB": [{"VALUE": "https://a.test"}],
                "IM": [{"VALUE": "tg", "VALUE_TYPE": "TELEGRAM"}],
            }
        },
    )
    got = portal.crm.get(entity, new_id)
    phone = got["PHONE"][0]
    assert set(phone) == {"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}
    assert phone["ID"].isdigit()
    assert (phone["VALUE"], phone["VALUE_TYPE"], phone["TYPE_ID"]) == ("+7 900", "MOBILE", "PHONE")
    assert got["EMAIL"][0]["VALUE_TYPE"] == "WORK" and got["EMAIL"][0]["TYPE_ID"] == "EMAIL"
    assert got["WEB"][0]["VALUE"] == "https://a.test"
    assert got["IM"][0]["VALUE_TYPE"] == "TELEGRAM"
    assert (got["HAS_PHONE"], got["HAS_EMAIL"]) == ("Y", "Y")


def test_values_without_id_are_added_not_replacing(portal: Portal) -> None:
    """An update with a new value keeps the old ones."""
    contact = portal.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}]})
    portal.crm.update(None, "contact", contact, {"PHONE": [{"VALUE": "2", "VALUE_TYPE": "HOME"}]})
    assert phones(portal, "contact", contact) == [("1", "WORK"), ("2", "HOME")]


def test_change_by_id(portal: Portal) -> None:
    """An item with an existing ID changes that value (and its VALUE_TYPE)."""
    contact = portal.crm.add(
        None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}, {"VALUE": "2"}]}
    )
    first_id = portal.crm.get("contact", contact)["PHONE"][0]["ID"]
    portal.crm.update(
        None,
        "contact",
        contact,
        {"PHONE": [{"ID": first_id, "VALUE": "11", "VALUE_TYPE": "MOBILE"}]},
    )
    got = portal.crm.get("contact", contact)["PHONE"]
    assert next((v["ID"], v["VALUE"], v["VALUE_TYPE"]) for v in got) == (first_id, "11", "MOBILE")
    assert len(got) == 2


def test_delete_by_id_with_empty_value(portal: Portal) -> None:
    """An item with an ID and an empty VALUE deletes it; HAS_PHONE follows."""
    company = portal.crm.add(None, "company", {"TITLE": "A", "PHONE": [{"VALUE": "1"}]})
    value_id = portal.crm.get("company", company)["PHONE"][0]["ID"]
    portal.crm.update(None, "company", company, {"PHONE": [{"ID": value_id, "VALUE": ""}]})
    got = portal.crm.get("company", company)
    assert "PHONE" not in got and got["HAS_PHONE"] == "N"


def test_mixed_change_delete_add_in_one_write(portal: Portal) -> None:
    """One write may change, delete and add values together (PHP map form too)."""
    lead = portal.crm.add(
        None, "lead", {"TITLE": "t", "EMAIL": [{"VALUE": "a@x.test"}, {"VALUE": "b@x.test"}]}
    )
    a, b = (v["ID"] for v in portal.crm.get("lead", lead)["EMAIL"])
    portal.crm.update(
        None,
        "lead",
        lead,
        {
            "EMAIL": {
                "0": {"ID": a, "VALUE": "a2@x.test"},
                "1": {"ID": b, "VALUE": ""},
                "n0": {"VALUE": "c@x.test", "VALUE_TYPE": "HOME"},
            }
        },
    )
    got = [(v["ID"], v["VALUE"]) for v in portal.crm.get("lead", lead)["EMAIL"]]
    assert got[0] == (a, "a2@x.test")
    assert [v for _, v in got] == ["a2@x.test", "c@x.test"]


def test_value_ids_are_unique_across_entities(portal: Portal) -> None:
    """Multi-field value IDs never repeat, even across entity types."""
    c = portal.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}]})
    k = portal.crm.add(None, "company", {"TITLE": "B", "PHONE": [{"VALUE": "1"}]})
    assert (
        portal.crm.get("contact", c)["PHONE"][0]["ID"]
        != portal.crm.get("company", k)["PHONE"][0]["ID"]
    )


def test_foreign_value_id_is_ignored(portal: Portal) -> None:
    """An ID belonging to another entity's value changes nothing."""
    c = portal.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}]})
    k = portal.crm.add(None, "company", {"TITLE": "B", "PHONE": [{"VALUE": "2"}]})
    foreign = portal.crm.get("company", k)["PHONE"][0]["ID"]
    portal.crm.update(None, "contact", c, {"PHONE": [{"ID": foreign, "VALUE": ""}]})
    assert phones(portal, "company", k) == [("2", "WORK")]
    assert phones(portal, "contact", c) == [("1", "WORK")]


@pytest.mark.parametrize(
    "value",
    [
        {"EMAIL": [{"VALUE": "not-an-email"}]},
        {"PHONE": [{"VALUE": "1", "VALUE_TYPE": "SATELLITE"}]},
        {"PHONE": "+7 900"},
        {"PHONE": ["+7 900"]},
    ],
)
def test_invalid_multifield_input_is_refused_atomically(
    portal: Portal, value: dict[str, Any]
) -> None:
    """A bad e-mail, value type or shape → 400, and the entity keeps its old values."""
    contact = portal.crm.add(None, "contact", {"NAME": "A", "PHONE": [{"VALUE": "1"}]})
    with pytest.raises(RestError) as info:
        portal.crm.update(None, "contact", contact, {"NAME": "B", **value})
    assert info.value.status == 400
    assert phones(portal, "contact", contact) == [("1", "WORK")]
    assert portal.crm.get("contact", contact)["NAME"] == "A"


def test_deals_have_no_multifields(portal: Portal) -> None:
    """PHONE on a deal is not a field: it is ignored."""
    deal = portal.crm.add(None, "deal", {"TITLE": "d", "PHONE": [{"VALUE": "1"}]})
    assert "PHONE" not in portal.crm.get("deal", deal)
