"""JSON through orjson: the same values as ``json`` gave, in columns on every backend and
in portal answers."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.core import json_codec
from connector.core.portal_answers import json_body

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits: json's path
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES: st.SearchStrategy[Any] = st.deferred(
    lambda: (
        SCALARS
        | st.lists(JSON_VALUES, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), JSON_VALUES, max_size=4)
    )
)


@PROPERTY
@given(JSON_VALUES)
def test_a_value_reads_back_as_json_would_have_stored_it(value: Any) -> None:
    """Whatever ``json`` could store (integer keys, 80-bit integers, any text) reads back
    the same through dumps/loads as through json.dumps/json.loads, and each side reads
    the other's text."""
    ours = json_codec.dumps(value)
    theirs = json.dumps(value)
    assert json_codec.loads(ours) == json.loads(theirs)
    assert json.loads(ours) == json_codec.loads(theirs)


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
        json_codec.dumps({"v": refused})


def test_a_nan_written_by_json_before_still_reads() -> None:
    """Rows json wrote with NaN (which orjson does not read) read as json read them."""
    assert math.isnan(json_codec.loads('{"v": NaN}')["v"])
    assert json_codec.loads(b'{"v": 1}') == {"v": 1}


def test_a_portal_answer_keeps_its_big_integers_and_a_page_is_not_json() -> None:
    """A 20-digit number in an answer reads exactly (orjson alone would give a float); a
    proxy's HTML page is no JSON (``None``)."""
    assert json_body(b'{"result": {"N": 12345678901234567890}}') == {
        "result": {"N": 12345678901234567890}
    }
    assert json_body(b'{"result": [{"ID": "1"}]}') == {"result": [{"ID": "1"}]}
    assert json_body(b"<html>502 Bad Gateway</html>") is None
