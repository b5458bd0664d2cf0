"""Push&Pull frame parsing: v3 markers, v4 JSON arrays, tolerance, and rejection."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.pull_frames import FrameError, Frames, parse_frames


def message(n: int, command: str = "user_online", **more: object) -> dict[str, object]:
    return {
        "id": n,
        "mid": f"1452613435000000000{n}",
        "channel": "6221e0eb48981fce67cf4756e82e8102",
        "tag": str(n),
        "time": "Thu, 29 Jun 2017 09:50:16 GMT",
        "text": {"module_id": "main", "command": command, "params": {"n": n}},
        **more,
    }


def framed(obj: object, start: str = "#!NGINXNMS!#", end: str = "#!NGINXNME!#") -> str:
    return f"{start}{json.dumps(obj)}{end}"


def test_v3_single_frame() -> None:
    """A v3 frame between the start and end markers gives one message with its fields."""
    result = parse_frames(framed(message(320146)))
    assert result.skipped == 0
    [msg] = result.messages
    assert (msg.id, msg.mid, msg.command, msg.params) == (
        320146,
        "1452613435000000000320146",
        "user_online",
        {"n": 320146},
    )


def test_v3_concatenated_frames_in_order() -> None:
    """Several v3 frames in one text (with newlines between them) come out in order."""
    text = framed(message(1)) + "\n" + framed(message(2)) + framed(message(3))
    result = parse_frames(text)
    assert [m.id for m in result.messages] == [1, 2, 3]


def test_v3_bytes_are_decoded_as_utf8() -> None:
    """A frame given as UTF-8 bytes (WebSocket binary or HTTP body) parses the same."""
    obj = message(5)
    obj["text"] = {"module_id": "main", "command": "ok", "params": {"name": "Привет"}}
    result = parse_frames(framed(obj).encode("utf-8"))
    assert result.messages[0].params == {"name": "Привет"}


@pytest.mark.parametrize(
    ("start", "end"),
    [("#!NGINXNMS#", "#!NGINXNME!#"), ("#NGINXNMS!#", "#!NGINXNME#"), ("#NGINXNMS#", "#NGINXNME#")],
)
def test_v3_marker_typos_are_tolerated(start: str, end: str) -> None:
    """Markers missing a ``!`` (the seed's own ``#!NGINXNMS#`` at L2567) still frame."""
    result = parse_frames(framed(message(7), start, end) + framed(message(8), start, end))
    assert [m.id for m in result.messages] == [7, 8]


def test_v3_seed_event_offline_sample_without_end_marker() -> None:
    """The seed's event_offline sample (typo start, no end marker) parses."""
    text = (
        '#!NGINXNMS#{"id": 9, "text": {"module_id": "rest", "command": "event_offline",'
        ' "params": [{"connector_id": "OneC", "count": 1}]}}'
    )
    [msg] = parse_frames(text).messages
    assert msg.command == "event_offline"
    assert msg.params == [{"connector_id": "OneC", "count": 1}]


def test_v3_frames_missing_end_markers_split_at_next_start() -> None:
    """Two frames that both lack an end marker are split at the second start marker."""
    text = "#!NGINXNMS!#" + json.dumps(message(1)) + "#!NGINXNMS!#" + json.dumps(message(2))
    assert [m.id for m in parse_frames(text).messages] == [1, 2]


def test_v3_extra_closing_brace_is_tolerated() -> None:
    """The seed's L2077 sample has one ``}`` too many after the object: still parsed."""
    text = "#!NGINXNMS!#" + json.dumps(message(4)) + "}#!NGINXNME!#"
    assert [m.id for m in parse_frames(text).messages] == [4]


def test_v3_malformed_frames_are_skipped_and_counted() -> None:
    """Bad JSON, a non-message object and stray text are each skipped and counted."""
    text = (
        framed(message(1))
        + "#!NGINXNMS!#{not json#!NGINXNME!#"
        + framed({"id": 2, "text": {"command": "no module"}})
        + "garbage"
        + framed(message(3))
        + "#!NGINXNME!#"
    )
    result = parse_frames(text)
    assert [m.id for m in result.messages] == [1, 3]
    assert result.skipped == 4


def test_v4_json_array() -> None:
    """A v4 ``format=json`` body is a JSON array of messages."""
    result = parse_frames(json.dumps([message(10), message(11)]))
    assert [m.id for m in result.messages] == [10, 11]
    assert result.skipped == 0


def test_v4_array_with_bad_items_skips_them() -> None:
    """Array items that are not messages are skipped and counted, the rest kept."""
    body = json.dumps([message(1), 42, {"text": "not an object either"}, message(2)])
    result = parse_frames(body)
    assert [m.id for m in result.messages] == [1, 2]
    assert result.skipped == 2


def test_v4_message_text_containing_a_marker_is_still_json() -> None:
    """A JSON array whose data happens to contain ``#!NGINXNMS!#`` is parsed as JSON."""
    obj = message(13)
    obj["text"] = {"module_id": "im", "command": "msg", "params": {"body": "#!NGINXNMS!# hi"}}
    [msg] = parse_frames(json.dumps([obj])).messages
    assert msg.params == {"body": "#!NGINXNMS!# hi"}


def test_v4_single_object_is_accepted() -> None:
    """A bare JSON object (one message, not wrapped in an array) is accepted."""
    assert [m.id for m in parse_frames(json.dumps(message(12))).messages] == [12]


def test_v4_concatenated_arrays_and_trailing_garbage() -> None:
    """Arrays one after another all count; garbage after them is one skipped frame."""
    body = json.dumps([message(1)]) + "\n" + json.dumps([message(2), message(3)]) + "}"
    assert [m.id for m in parse_frames(body).messages] == [1, 2, 3]
    result = parse_frames(json.dumps([message(4)]) + " trailing words")
    assert ([m.id for m in result.messages], result.skipped) == ([4], 1)
    result = parse_frames(json.dumps([message(5)]) + " 42")
    assert ([m.id for m in result.messages], result.skipped) == ([5], 1)


@pytest.mark.parametrize("body", ["", "   ", "\n", b""])
def test_empty_body_is_no_messages(body: str | bytes) -> None:
    """An empty long-polling answer is zero messages, not an error."""
    assert parse_frames(body) == Frames(())


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00bad", "plain text", "[1, 2", "42", '"a string"', "{broken"],
)
def test_rejected_input_raises_frame_error(body: str | bytes) -> None:
    """Input that is neither framing, not JSON, or not UTF-8 raises FrameError."""
    with pytest.raises(FrameError):
        parse_frames(body)


def test_frame_error_does_not_echo_the_content() -> None:
    """The FrameError message names the size, never the (possibly secret) content."""
    with pytest.raises(FrameError) as info:
        parse_frames("secret-channel-id-0d875ab13a17a97fc2f5")
    assert "0d875ab" not in str(info.value)


def test_deep_nesting_is_rejected_not_crashing() -> None:
    """Pathologically nested JSON gives FrameError (not RecursionError)."""
    with pytest.raises(FrameError):
        parse_frames("[" * 100_000 + "]" * 100_000)


def test_deep_nesting_inside_v3_frame_is_skipped() -> None:
    """Pathological nesting inside a v3 frame is skipped, the other frames kept."""
    text = "#!NGINXNMS!#" + "[" * 100_000 + "#!NGINXNME!#" + framed(message(1))
    result = parse_frames(text)
    assert [m.id for m in result.messages] == [1]
    assert result.skipped == 1


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["id", "mid", "text", "extra", "channel", "x"]), children)
    ),
    max_leaves=12,
)


@given(st.binary())
def test_any_bytes_parse_or_raise_frame_error(data: bytes) -> None:
    """Property: any byte string is parsed or rejected with FrameError, nothing else."""
    try:
        result = parse_frames(data)
    except FrameError:
        return
    assert result.skipped >= 0


@given(
    st.lists(
        st.one_of(
            st.text(),
            st.sampled_from(["#!NGINXNMS!#", "#!NGINXNME!#", "#!NGINXNMS#", "[", "]", "{", "}"]),
            _json_values.map(json.dumps),
        ),
        max_size=8,
    ).map("".join)
)
def test_any_text_parse_or_raise_frame_error(text: str) -> None:
    """Property: marker- and JSON-laden text is parsed or rejected with FrameError only."""
    try:
        result = parse_frames(text)
    except FrameError:
        return
    assert all(m.command for m in result.messages)


@given(st.lists(_json_values, max_size=6))
def test_array_items_are_messages_or_counted(items: list[object]) -> None:
    """Property: in a v4 array, every item is either a message or counted as skipped."""
    result = parse_frames(json.dumps(items))
    assert len(result.messages) + result.skipped == len(items)
