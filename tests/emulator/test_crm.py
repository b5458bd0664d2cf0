"""crm.{lead,contact,company,deal}.{add,update,get,delete,fields}, user fields and the
store's Python API (digest §9, §11.1 "CRM", §12)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connector.emulator.context import CallContext
from connector.emulator.portal import Portal
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import RestError

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
ENTITIES = ("lead", "contact", "company", "deal")


def app_ctx(connector: str = "OneC", *, user_id: int = 1) -> CallContext:
    return CallContext(
        client_id="local.app1", user_id=user_id, is_admin=user_id == 1, auth_connector=connector
    )


def call(
    portal: Portal,
    method: str,
    params: dict[str, Any] | None = None,
    ctx: CallContext | None = None,
) -> MethodResult:
    entry = registry.lookup(method)
    assert entry is not None, method
    return entry[0](portal, ctx or app_ctx(), dict(params or {}))


def rest_error(portal: Portal, method: str, params: dict[str, Any] | None = None) -> RestError:
    with pytest.raises(RestError) as info:
        call(portal, method, params)
    return info.value


@pytest.fixture
def portal() -> Portal:
    return Portal()


@pytest.mark.parametrize("entity", ENTITIES)
def test_add_returns_int_and_get_returns_strings(portal: Portal, entity: str) -> None:
    """add → integer ID; get → "ID" as a string, ISO dates with offset, user IDs as
    strings (the real output types)."""
    fields = {"TITLE": "T", "NAME": "N", "COMMENTS": "hello"}
    new_id = call(portal, f"crm.{entity}.add", {"fields": fields}).result
    assert isinstance(new_id, int) and new_id == 1
    got = call(portal, f"crm.{entity}.get", {"id": str(new_id)}).result
    assert got["ID"] == "1"
    assert got["COMMENTS"] == "hello"
    assert ISO.match(got["DATE_CREATE"]) and got["DATE_CREATE"] == got["DATE_MODIFY"]
    assert got["CREATED_BY_ID"] == got["MODIFY_BY_ID"] == got["ASSIGNED_BY_ID"] == "1"
    assert got["OPENED"] == "Y"


def test_ids_are_per_entity_and_increasing(portal: Portal) -> None:
    """Each entity type numbers its records from 1."""
    assert [call(portal, "crm.deal.add", {"fields": {"TITLE": "d"}}).result for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert call(portal, "crm.lead.add", {"fields": {"TITLE": "l"}}).result == 1


def test_update_and_delete_return_true(portal: Portal) -> None:
    """update/delete answer true; update changes DATE_MODIFY and MODIFY_BY_ID."""
    deal = call(portal, "crm.deal.add", {"fields": {"TITLE": "d", "OPPORTUNITY": 10}}).result
    portal.clock.advance(60)
    ok = call(
        portal,
        "crm.deal.update",
        {"id": deal, "fields": {"OPPORTUNITY": "1500.5"}},
        ctx=app_ctx(user_id=2),
    )
    assert ok.result is True
    got = call(portal, "crm.deal.get", {"ID": deal}).result
    assert got["OPPORTUNITY"] == "1500.50"
    assert got["MODIFY_BY_ID"] == "2" and got["CREATED_BY_ID"] == "1"
    assert got["DATE_MODIFY"] != got["DATE_CREATE"]
    assert call(portal, "crm.deal.delete", {"id": deal}).result is True
    assert not portal.crm.exists("deal", deal)


@pytest.mark.parametrize("method", ["get", "update", "delete"])
def test_not_found_is_http_400_with_empty_code(portal: Portal, method: str) -> None:
    """A missing entity → 400 {"error": "", "error_description": "Not found"} (§12)."""
    err = rest_error(portal, f"crm.company.{method}", {"id": 99, "fields": {"TITLE": "x"}})
    assert (err.status, err.body()) == (400, {"error": "", "error_description": "Not found"})


@pytest.mark.parametrize("method", ["get", "update", "delete"])
def test_missing_id_is_a_crm_error(portal: Portal, method: str) -> None:
    """No or bad id → 400 "ID is not defined or invalid."."""
    err = rest_error(portal, f"crm.lead.{method}", {"id": "abc", "fields": {}})
    assert (err.status, err.code, err.description) == (400, "", "ID is not defined or invalid.")


def test_fields_must_be_a_map(portal: Portal) -> None:
    """add without fields{} is refused."""
    err = rest_error(portal, "crm.lead.add", {"fields": "TITLE"})
    assert err.status == 400 and "fields" in err.description


def test_company_title_is_required(portal: Portal) -> None:
    """crm.company.add without TITLE fails; update cannot blank it."""
    err = rest_error(portal, "crm.company.add", {"fields": {"COMMENTS": "x"}})
    assert (err.code, err.description) == ("", 'The field "Company name" is required.')
    company = call(portal, "crm.company.add", {"fields": {"TITLE": "Acme"}}).result
    rest_error(portal, "crm.company.update", {"id": company, "fields": {"TITLE": ""}})
    assert portal.crm.get("company", company)["TITLE"] == "Acme"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("OPPORTUNITY", "lots"),
        ("ASSIGNED_BY_ID", "boss"),
        ("BEGINDATE", "tomorrow"),
        ("TITLE", {"nested": 1}),
    ],
)
def test_bad_values_are_validation_errors(portal: Portal, field: str, value: Any) -> None:
    """A value the field cannot hold → 400 naming the field; nothing is written."""
    err = rest_error(portal, "crm.deal.add", {"fields": {"TITLE": "d", field: value}})
    assert err.status == 400 and field in err.description
    assert portal.crm.count("deal") == 0


def test_read_only_and_unknown_fields_are_ignored(portal: Portal) -> None:
    """ID, DATE_CREATE, CREATED_BY_ID and unknown keys in fields{} change nothing."""
    lead = call(
        portal,
        "crm.lead.add",
        {
            "fields": {
                "TITLE": "x",
                "ID": 500,
                "CREATED_BY_ID": 7,
                "NO_SUCH": "y",
                "DATE_CREATE": "2001-01-01T00:00:00+00:00",
            }
        },
    ).result
    got = portal.crm.get("lead", lead)
    assert got["ID"] == str(lead) and lead == 1
    assert got["CREATED_BY_ID"] == "1"
    assert not got["DATE_CREATE"].startswith("2001")
    assert "NO_SUCH" not in got


def test_deal_category_is_immutable_and_stage_drives_closed(portal: Portal) -> None:
    """CATEGORY_ID is set on add only; STAGE_ID WON closes the deal (semantic S)."""
    deal = call(portal, "crm.deal.add", {"fields": {"TITLE": "d", "CATEGORY_ID": 2}}).result
    call(portal, "crm.deal.update", {"id": deal, "fields": {"CATEGORY_ID": 5, "STAGE_ID": "WON"}})
    got = portal.crm.get("deal", deal)
    assert (got["CATEGORY_ID"], got["STAGE_ID"], got["STAGE_SEMANTIC_ID"], got["CLOSED"]) == (
        "2",
        "WON",
        "S",
        "Y",
    )


def test_defaults_and_references(portal: Portal) -> None:
    """Defaults (STATUS_ID NEW, CURRENCY_ID RUB, TITLE "Deal #ID") and link fields."""
    company = portal.crm.add(None, "company", {"TITLE": "Acme"})
    contact = portal.crm.add(None, "contact", {"LAST_NAME": "Doe", "COMPANY_ID": company})
    deal = portal.crm.add(None, "deal", {"COMPANY_ID": str(company), "CONTACT_ID": contact})
    lead = portal.crm.add(None, "lead", {})
    assert portal.crm.get("deal", deal)["TITLE"] == f"Deal #{deal}"
    assert portal.crm.get("deal", deal)["COMPANY_ID"] == str(company)
    assert portal.crm.get("contact", contact)["COMPANY_ID"] == str(company)
    got_lead = portal.crm.get("lead", lead)
    assert (got_lead["STATUS_ID"], got_lead["CURRENCY_ID"], got_lead["OPPORTUNITY"]) == (
        "NEW",
        "RUB",
        "0.00",
    )
    assert got_lead["COMPANY_ID"] is None


def test_origin_fields_round_trip(portal: Portal) -> None:
    """ORIGINATOR_ID / ORIGIN_ID (the ERP key) are stored and returned as strings."""
    company = call(
        portal,
        "crm.company.add",
        {"fields": {"TITLE": "Acme", "ORIGINATOR_ID": "erp", "ORIGIN_ID": 42}},
    ).result
    got = portal.crm.get("company", company)
    assert (got["ORIGINATOR_ID"], got["ORIGIN_ID"]) == ("erp", "42")


def test_dates_render_with_the_portal_offset(portal: Portal) -> None:
    """date fields come back as midnight with the portal's offset; empty as ""."""
    contact = portal.crm.add(None, "contact", {"NAME": "A", "BIRTHDATE": "1990-05-12"})
    assert portal.crm.get("contact", contact)["BIRTHDATE"] == "1990-05-12T00:00:00+03:00"
    other = portal.crm.add(None, "contact", {"NAME": "B"})
    assert portal.crm.get("contact", other)["BIRTHDATE"] == ""


@pytest.mark.parametrize("entity", ENTITIES)
def test_fields_describes_every_field_in_the_real_shape(portal: Portal, entity: str) -> None:
    """crm.<entity>.fields → {FIELD: {type, isRequired, isReadOnly, isImmutable,
    isMultiple, isDynamic, title}}."""
    info = call(portal, f"crm.{entity}.fields").result
    keys = {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic", "title"}
    assert all(keys <= set(v) for v in info.values())
    assert info["ID"]["isReadOnly"] is True and info["ID"]["type"] == "integer"
    assert info["DATE_MODIFY"]["type"] == "datetime"
    if entity != "deal":
        assert info["PHONE"]["type"] == "crm_multifield" and info["PHONE"]["isMultiple"]
    else:
        assert "PHONE" not in info and info["CATEGORY_ID"]["isImmutable"] is True


def test_crm_writes_fire_entity_events_with_the_caller(portal: Portal) -> None:
    """REST writes fire ONCRM<ENTITY>ADD/UPDATE/DELETE under the request's context."""
    ctx = app_ctx("OneC", user_id=2)
    company = call(portal, "crm.company.add", {"fields": {"TITLE": "A"}}, ctx=ctx).result
    call(portal, "crm.company.update", {"id": company, "fields": {"TITLE": "B"}}, ctx=ctx)
    call(portal, "crm.company.delete", {"id": company}, ctx=ctx)
    assert [(f.event_name, f.event_data, f.user_id) for f in ctx.firings] == [
        ("ONCRMCOMPANYADD", {"FIELDS": {"ID": company}}, 2),
        ("ONCRMCOMPANYUPDATE", {"FIELDS": {"ID": company}}, 2),
        ("ONCRMCOMPANYDELETE", {"FIELDS": {"ID": company}}, 2),
    ]


def test_failed_write_fires_nothing(portal: Portal) -> None:
    """A refused add or an update of a missing entity does not fire."""
    ctx = app_ctx()
    with pytest.raises(RestError):
        call(portal, "crm.company.add", {"fields": {}}, ctx=ctx)
    with pytest.raises(RestError):
        call(portal, "crm.company.update", {"id": 5, "fields": {"TITLE": "x"}}, ctx=ctx)
    assert ctx.firings == []


# ---- user fields -------------------------------------------------------------------


def test_userfield_add_prefixes_and_lists(portal: Portal) -> None:
    """crm.lead.userfield.add adds UF_CRM_ when missing; .list shows the field."""
    uf_id = call(
        portal,
        "crm.lead.userfield.add",
        {"fields": {"FIELD_NAME": "ERP_CODE", "USER_TYPE_ID": "string", "EDIT_FORM_LABEL": "ERP"}},
    ).result
    assert isinstance(uf_id, int)
    rows = call(portal, "crm.lead.userfield.list").result
    assert [(r["FIELD_NAME"], r["ENTITY_ID"], r["MULTIPLE"]) for r in rows] == [
        ("UF_CRM_ERP_CODE", "CRM_LEAD", "N")
    ]
    assert call(portal, "crm.lead.userfield.get", {"id": uf_id}).result["ID"] == str(uf_id)
    assert call(portal, "crm.contact.userfield.list").result == []


@pytest.mark.parametrize("name", ["UF_CRM_THIS_NAME_IS_TOO_LONG", "bad-name!", ""])
def test_userfield_name_rules(portal: Portal, name: str) -> None:
    """Names longer than 20 characters or with odd characters are refused."""
    err = rest_error(
        portal, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": name, "USER_TYPE_ID": "string"}}
    )
    assert err.status == 400


def test_userfield_values_round_trip_and_unknown_uf_ignored(portal: Portal) -> None:
    """UF values are written and read back; an undefined UF_CRM_* key is ignored."""
    portal.crm.add_userfield("company", "UF_CRM_CODE", "string")
    portal.crm.add_userfield("company", "UF_CRM_SCORE", "double")
    portal.crm.add_userfield("company", "UF_CRM_TAGS", "string", multiple=True)
    company = call(
        portal,
        "crm.company.add",
        {
            "fields": {
                "TITLE": "A",
                "UF_CRM_CODE": "C-1",
                "UF_CRM_SCORE": "4.5",
                "UF_CRM_TAGS": ["x", "y"],
                "UF_CRM_UNKNOWN": "z",
            }
        },
    ).result
    got = call(portal, "crm.company.get", {"id": company}).result
    assert (got["UF_CRM_CODE"], got["UF_CRM_SCORE"], got["UF_CRM_TAGS"]) == ("C-1", 4.5, ["x", "y"])
    assert "UF_CRM_UNKNOWN" not in got
    info = call(portal, "crm.company.fields").result["UF_CRM_TAGS"]
    assert info["isDynamic"] is True and info["isMultiple"] is True


def test_userfield_enumeration_and_mandatory(portal: Portal) -> None:
    """Enumeration values must be item IDs; a mandatory UF is required."""
    uf = portal.crm.add_userfield(
        "deal",
        "UF_CRM_KIND",
        "enumeration",
        mandatory=True,
        items=[{"VALUE": "Retail"}, {"VALUE": "Wholesale"}],
    )
    item_id = uf.items[1]["ID"]
    err = rest_error(portal, "crm.deal.add", {"fields": {"TITLE": "d"}})
    assert "UF_CRM_KIND" in err.description
    rest_error(portal, "crm.deal.add", {"fields": {"TITLE": "d", "UF_CRM_KIND": "999999"}})
    deal = call(portal, "crm.deal.add", {"fields": {"TITLE": "d", "UF_CRM_KIND": item_id}}).result
    assert portal.crm.get("deal", deal)["UF_CRM_KIND"] == str(item_id)


def test_userfield_delete_removes_values(portal: Portal) -> None:
    """Deleting a user field drops it from fields and from records."""
    uf = portal.crm.add_userfield("lead", "UF_CRM_X")
    lead = portal.crm.add(None, "lead", {"TITLE": "t", "UF_CRM_X": "v"})
    call(portal, "crm.lead.userfield.delete", {"id": uf.id})
    assert "UF_CRM_X" not in portal.crm.get("lead", lead)
    assert "UF_CRM_X" not in call(portal, "crm.lead.fields").result


# ---- Python API ----------------------------------------------------------------------


def test_python_api_acts_as_a_ui_user(portal: Portal) -> None:
    """add/update/delete with ctx=None act as the given UI user (EVENT_ADDITIONAL)."""
    portal.events.bind("local.app1", "ONCRMLEADUPDATE", connector_id="OneC")
    lead = portal.crm.add(None, "lead", {"TITLE": "x"}, user_id=2)
    portal.crm.update(None, "lead", lead, {"TITLE": "y"}, user_id=2)
    assert portal.crm.get("lead", lead)["ASSIGNED_BY_ID"] == "2"
    assert [r.event_additional for r in portal.queue.records()] == [{"user_id": "2"}]


def test_seed_is_deterministic(portal: Portal) -> None:
    """seed(entity, n) creates the same records on two portals."""
    other = Portal()
    ids = portal.crm.seed("contact", 3)
    assert ids == other.crm.seed("contact", 3) == [1, 2, 3]
    strip = ("DATE_CREATE", "DATE_MODIFY")
    for n in ids:
        mine = {k: v for k, v in portal.crm.get("contact", n).items() if k not in strip}
        theirs = {k: v for k, v in other.crm.get("contact", n).items() if k not in strip}
        assert mine == theirs
    assert portal.crm.get("contact", 2)["EMAIL"][0]["VALUE"] == "contact0002@example.test"
    assert portal.crm.ids("contact") == [1, 2, 3] and portal.crm.count("contact") == 3


def test_python_get_of_missing_record_raises_not_found(portal: Portal) -> None:
    """get() of a missing record raises the Not found RestError."""
    with pytest.raises(RestError) as info:
        portal.crm.get("deal", 1)
    assert info.value.description == "Not found"
