"""Field values between portal strings and ERP column values, and errors that name the field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.field_values import canonical, to_erp, to_portal
from connector.core.mapping_model import FieldMapping, FieldType
from connector.errors import RecordError


def fm(type_: FieldType, **kw: object) -> FieldMapping:
    return FieldMapping(portal="F", column="f", type=type_, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        (fm(FieldType.STRING, length=5), "abc", "abc"),
        (fm(FieldType.STRING, length=5), "", None),
        (fm(FieldType.TEXT), None, None),
        (fm(FieldType.INTEGER), "42", 42),
        (fm(FieldType.INTEGER), 7, 7),
        (fm(FieldType.DECIMAL, scale=2), "1500.5", Decimal("1500.50")),
        (fm(FieldType.BOOLEAN), "Y", True),
        (fm(FieldType.BOOLEAN), "N", False),
        (fm(FieldType.DATE), "2024-03-01T00:00:00+03:00", date(2024, 3, 1)),
        (
            fm(FieldType.DATETIME),
            "2018-02-14T14:20:19+02:00",
            datetime(2018, 2, 14, 12, 20, 19, tzinfo=UTC),
        ),
        (fm(FieldType.ENUM, values=(("CUSTOMER", "client"),)), "CUSTOMER", "client"),
    ],
)
def test_portal_values_become_column_values(
    field: FieldMapping, raw: object, expected: object
) -> None:
    """The portal's string forms convert to typed ERP values (dates to UTC)."""
    assert to_erp(field, raw, entity="crm.company", record_id=1) == expected


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        (fm(FieldType.STRING, length=3), "abcd", "do not fit column f"),
        (fm(FieldType.INTEGER), "12a", "is not an integer"),
        (fm(FieldType.DECIMAL, precision=4, scale=2), "123.45", "precision 4"),
        (fm(FieldType.DECIMAL), "NaN", "not a finite number"),
        (fm(FieldType.BOOLEAN), "maybe", "not a Y/N boolean"),
        (fm(FieldType.DATE), "yesterday", "is not a date"),
        (fm(FieldType.DATETIME), "2018-02-14T14:20:19", "has no UTC offset"),
        (fm(FieldType.ENUM, values=(("A", "a"),)), "B", "not one of the mapped values"),
        (fm(FieldType.STRING), {"VALUE": "x"}, "expected a single value"),
    ],
)
def test_a_value_the_column_cannot_hold_names_entity_record_and_field(
    field: FieldMapping, raw: object, reason: str
) -> None:
    """Bad input is a RecordError naming entity, id and portal field, with the reason."""
    with pytest.raises(RecordError) as info:
        to_erp(field, raw, entity="crm.deal", record_id=77)
    err = info.value
    assert (err.entity, err.record_id, err.field) == ("crm.deal", 77, "F")
    assert str(err).startswith("crm.deal id=77 field=F: ")
    assert reason in str(err)


@pytest.mark.parametrize(
    ("field", "value", "portal"),
    [
        (fm(FieldType.BOOLEAN), True, "Y"),
        (fm(FieldType.BOOLEAN), None, "N"),
        (fm(FieldType.DECIMAL), Decimal("10.50"), "10.50"),
        (fm(FieldType.DATE), date(2024, 1, 2), "2024-01-02"),
        (
            fm(FieldType.DATETIME),
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "2024-01-02T03:04:05+00:00",
        ),
        (fm(FieldType.ENUM, values=(("CUSTOMER", "client"),)), "client", "CUSTOMER"),
        (fm(FieldType.STRING), None, ""),
    ],
)
def test_column_values_become_portal_strings(
    field: FieldMapping, value: object, portal: str
) -> None:
    """ERP values render in the forms the portal accepts (Y/N, ISO dates, plain decimals)."""
    assert to_portal(field, value, entity="crm.company", record_id=1) == portal  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_strings_round_trip(text: str) -> None:
    """portal → ERP → portal keeps any string that fits (empty reads back as empty)."""
    field = fm(FieldType.STRING, length=40)
    back = to_portal(field, to_erp(field, text, entity="e", record_id=1), entity="e", record_id=1)
    assert back == text


@given(
    st.decimals(
        allow_nan=False,
        allow_infinity=False,
        places=2,
        min_value=Decimal("-1e12"),
        max_value=Decimal("1e12"),
    )
)
def test_decimals_round_trip(number: Decimal) -> None:
    """A 2-place decimal survives portal → ERP → portal → ERP unchanged."""
    field = fm(FieldType.DECIMAL, scale=2)
    first = to_erp(field, str(number), entity="e", record_id=1)
    again = to_erp(field, to_portal(field, first, entity="e", record_id=1), entity="e", record_id=1)
    assert first == again == canonical(field, number)


def test_canonical_treats_empty_and_none_alike() -> None:
    """For the merge, '' and None are the same value; an absent boolean is False."""
    assert canonical(fm(FieldType.STRING), "") == canonical(fm(FieldType.STRING), None)
    assert canonical(fm(FieldType.BOOLEAN), None) is False
