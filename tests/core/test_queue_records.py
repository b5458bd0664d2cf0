"""Offline queue records as the connector reads them: lenient about types, strict about
what it needs, and a batch sorted into records, bad ones and unmapped events (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.adapters.mapping_files import load_mappings
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import parse_record, plan_batch
from connector.errors import RecordError

MAPPINGS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ID": "40",
        "TIMESTAMP_X": "2018-02-14T14:20:19+02:00",
        "EVENT_NAME": "ONCRMCOMPANYUPDATE",
        "EVENT_DATA": {"FIELDS": {"ID": 28}},
        "EVENT_ADDITIONAL": {"user_id": "1"},
        "MESSAGE_ID": "438d4ec3d329464c4bb9909db4c7a19b",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_a_record_reads_with_the_types_the_portal_mixes() -> None:
    """ID a string, the entity ID a number or a string, user_id a string, lower-case name."""
    rec = parse_record(
        record(EVENT_NAME="onCrmCompanyUpdate", EVENT_DATA={"FIELDS": {"ID": "28"}}), MAPPINGS
    )
    assert (rec.record_id, rec.entity, rec.action, rec.entity_id, rec.user_id) == (
        40,
        "crm.company",
        "UPDATE",
        28,
        1,
    )
    assert rec.event_name == "ONCRMCOMPANYUPDATE"
    assert parse_record(record(EVENT_ADDITIONAL=[]), MAPPINGS).user_id is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ID": "x"}, "ID"),
        ({"EVENT_NAME": ""}, "EVENT_NAME"),
        ({"EVENT_DATA": False}, "EVENT_DATA.FIELDS.ID"),
        ({"EVENT_DATA": "text"}, "EVENT_DATA.FIELDS.ID"),
        ({"EVENT_DATA": {"FIELDS": {}}}, "EVENT_DATA.FIELDS.ID"),
        ({"EVENT_DATA": {"FIELDS": {"ID": 0}}}, "EVENT_DATA.FIELDS.ID"),
        ({"EVENT_DATA": {"FIELDS": {"ID": True}}}, "EVENT_DATA.FIELDS.ID"),
        ({"MESSAGE_ID": None}, "MESSAGE_ID"),
    ],
)
def test_what_cannot_be_used_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_record(record(**changes), MAPPINGS)
    assert info.value.field == field


def test_a_batch_sorts_records_bad_ones_and_unmapped_events() -> None:
    """Usable records are planned, bad ones kept with their MESSAGE_ID (to flag), events
    of an unmapped entity set aside (to clear); every record ID is accounted for, and an
    entity named twice is fetched once."""
    no_leads = MappingSet({k: v for k, v in MAPPINGS.entities.items() if k != "crm.lead"})
    plan = plan_batch(
        [
            record(),
            record(ID="41", EVENT_NAME="ONCRMCOMPANYADD", MESSAGE_ID="m2"),
            record(ID="42", EVENT_DATA=False, MESSAGE_ID="m3"),
            record(ID="43", EVENT_NAME="ONCRMLEADUPDATE", MESSAGE_ID="m4"),
            "not an object",
        ],
        no_leads,
    )
    assert [r.record_id for r in plan.records] == [40, 41]
    assert [(b.record_id, b.message_id) for b in plan.bad] == [(42, "m3"), (None, None)]
    assert plan.unmapped == [(43, "ONCRMLEADUPDATE")]
    assert sorted(plan.record_ids()) == [40, 41, 42, 43]
    assert plan.targets() == {"crm.company": [28]}
