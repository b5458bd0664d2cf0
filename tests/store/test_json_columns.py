"""JSON columns through orjson: the same values as ``json`` gave, on every backend."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.adapters.store import json_columns
from connector.adapters.store.database import make_engine

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits: json's path
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(JSON_VALUES)
def test_a_value_reads_back_as_json_would_have_stored_it(value: Any) -> None:
    """Whatever ``json`` could store (integer keys, 80-bit integers, any text) reads back
    the same through dumps/loads as through json.dumps/json.loads, and each side reads
    the other's text."""
    ours = json_columns.dumps(value)
    theirs = json.dumps(value)
    assert json_columns.loads(ours) == json.loads(theirs)
    assert json.loads(ours) == json_columns.loads(theirs)


@dataclasses.dataclass
class _Row:
    n: int


@pytest.mark.parametrize(
    "refused", [datetime(2026, 12, 1, tzinfo=UTC), Decimal("1.5"), _Row(1), {1, 2}]
)
def test_what_json_refuses_is_still_a_type_error(refused: Any) -> None:
    """A datetime, a Decimal, a dataclass or a set in a JSON column was a bug json
    reported with TypeError; orjson would write some of them silently; it is still one."""
    with pytest.raises(TypeError):
        json_columns.dumps({"v": refused})


def test_a_nan_written_by_json_before_still_reads() -> None:
    """Rows json wrote with NaN (which orjson does not read) read as json read them."""
    assert math.isnan(json_columns.loads('{"v": NaN}')["v"])
    assert json_columns.loads(b'{"v": 1}') == {"v": 1}


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_the_engine_writes_json_columns_through_orjson(engine: sa.Engine) -> None:
    """A JSON column (as ``sync_link.base`` is) stores orjson's compact text with
    non-ASCII kept, and reads back the same value, big integers included."""
    metadata = sa.MetaData()
    table = sa.Table(
        "json_probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.JSON),
    )
    metadata.create_all(engine)
    value = {"TITLE": "Рога и копыта", "PHONE": [["WORK", "+7 1"]], "1": None}
    big = {"BIG": 2**70, "NEAR": -(2**63) - 1}  # json's path, both ways
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": 1, "v": value}, {"id": 2, "v": big}])
            read = conn.execute(sa.select(table.c.v).order_by(table.c.id)).scalars().all()
            assert read == [value, big]
            if engine.dialect.name != "postgresql":  # JSON text kept as sent (not jsonb)
                raw = conn.execute(sa.text("SELECT v FROM json_probe WHERE id = 1")).scalar_one()
                assert '"TITLE":"Рога и копыта"' in raw
    finally:
        metadata.drop_all(engine)
