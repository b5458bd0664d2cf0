"""Push&Pull message model, the event_offline wake test and control commands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.core.pull_messages import (
    ChannelExpire,
    ConfigExpire,
    MessageError,
    OfflineNotice,
    PullMessage,
    ServerRestart,
    is_offline_wake,
    offline_notices,
    parse_control,
    parse_message,
)

SEED_SAMPLE = {
    "id": 320146,
    "mid": "14526134350000000000320146",
    "channel": "6221e0eb48981fce67cf4756e82e8102",
    "tag": "672",
    "time": "Mon, 03 Oct 2017 06:36:01 GMT",
    "text": {
        "module_id": "main",
        "command": "user_online",
        "params": {"user": 1},
        "extra": {"server_time_unix": 1507012561, "revision": 16},
    },
}


def offline(*entries: object) -> PullMessage:
    return parse_message(
        {
            "id": 1,
            "text": {"module_id": "rest", "command": "event_offline", "params": list(entries)},
        }
    )


def control(command: str, params: object) -> PullMessage:
    return parse_message({"text": {"module_id": "pull", "command": command, "params": params}})


def test_seed_sample_fields() -> None:
    """The seed's L2091 sample maps onto every model field, extra read from inside text."""
    msg = parse_message(SEED_SAMPLE)
    assert msg == PullMessage(
        module_id="main",
        command="user_online",
        params={"user": 1},
        id=320146,
        mid="14526134350000000000320146",
        channel="6221e0eb48981fce67cf4756e82e8102",
        tag="672",
        time="Mon, 03 Oct 2017 06:36:01 GMT",
        extra={"server_time_unix": 1507012561, "revision": 16},
    )


def test_extra_beside_text_is_read_and_inside_wins() -> None:
    """``extra`` beside ``text`` is used; a key present in both takes the inside value."""
    raw = {
        "text": {"module_id": "m", "command": "c", "extra": {"revision": 20}},
        "extra": {"revision": 16, "server_name": "rt1"},
    }
    assert parse_message(raw).extra == {"revision": 20, "server_name": "rt1"}


def test_channel_falls_back_to_extra_channel() -> None:
    """Without a top-level ``channel`` (old servers) the id comes from ``extra.channel``."""
    raw = {"text": {"module_id": "m", "command": "c"}, "extra": {"channel": "abc"}}
    assert parse_message(raw).channel == "abc"


def test_numeric_strings_and_missing_fields() -> None:
    """A string id becomes an int, an int mid a string; absent fields are None/empty."""
    msg = parse_message({"id": "77", "mid": 123, "text": {"module_id": "m", "command": "c"}})
    assert (msg.id, msg.mid, msg.tag, msg.time, msg.params, msg.extra) == (
        77,
        "123",
        None,
        None,
        {},
        {},
    )


def test_text_given_as_json_string() -> None:
    """``text`` holding a JSON string of the object is accepted."""
    msg = parse_message({"text": '{"module_id": "m", "command": "c", "params": [1]}'})
    assert (msg.module_id, msg.params) == ("m", [1])


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "x",
        {"id": 1},
        {"text": {"module_id": "m"}},
        {"text": {"command": "c"}},
        {"text": {"module_id": "m", "command": ""}},
        {"text": "not json"},
        {"text": "[1]"},
    ],
)
def test_non_messages_raise_message_error(raw: object) -> None:
    """Values without ``text.module_id`` and ``text.command`` raise MessageError."""
    with pytest.raises(MessageError):
        parse_message(raw)


def test_offline_wake_for_our_connector_only() -> None:
    """event_offline wakes only when one of its entries names our connector id."""
    msg = offline({"connector_id": "OneC", "count": 1}, {"connector_id": "erp", "count": 3})
    assert is_offline_wake(msg, "erp")
    assert is_offline_wake(msg, "OneC")
    assert not is_offline_wake(msg, "other")
    assert offline_notices(msg) == [OfflineNotice("OneC", 1), OfflineNotice("erp", 3)]


def test_offline_wake_accepts_single_object_params() -> None:
    """A ``params`` object (not a list) with our connector id still wakes."""
    msg = parse_message(
        {
            "text": {
                "module_id": "rest",
                "command": "event_offline",
                "params": {"connector_id": "erp"},
            }
        }
    )
    assert is_offline_wake(msg, "erp")
    assert offline_notices(msg) == [OfflineNotice("erp", None)]


def test_no_wake_for_other_commands_or_modules() -> None:
    """Another command, another module, or malformed entries never wake."""
    other_cmd = parse_message(
        {
            "text": {
                "module_id": "rest",
                "command": "event_online",
                "params": [{"connector_id": "erp"}],
            }
        }
    )
    other_mod = parse_message(
        {
            "text": {
                "module_id": "app",
                "command": "event_offline",
                "params": [{"connector_id": "erp"}],
            }
        }
    )
    malformed = offline("erp", {"connector_id": 5}, None)
    assert not any(is_offline_wake(m, "erp") for m in (other_cmd, other_mod, malformed))


def test_channel_expire_reconnect_from_seed() -> None:
    """The seed's channel_expire sample becomes a reconnect with the new channel."""
    msg = control(
        "channel_expire",
        {
            "action": "reconnect",
            "channel": {"id": "46a4.7910", "type": "shared"},
            "new_channel": {
                "id": "fb9f.2887",
                "start": "2017-06-28T09:57:48+02:00",
                "end": "2017-06-28T21:57:48+02:00",
                "type": "shared",
            },
        },
    )
    ctl = parse_control(msg)
    assert isinstance(ctl, ChannelExpire)
    assert (ctl.action, ctl.channel_id, ctl.channel_type) == ("reconnect", "46a4.7910", "shared")
    assert ctl.new_channel is not None
    assert ctl.new_channel.id == "fb9f.2887"
    assert ctl.new_channel.end == datetime(2017, 6, 28, 19, 57, 48, tzinfo=UTC)


def test_channel_expire_get_config() -> None:
    """action=get_config parses with no new channel."""
    ctl = parse_control(control("channel_expire", {"action": "get_config", "channel": {"id": "a"}}))
    assert ctl == ChannelExpire("get_config", "a", None, None)


@pytest.mark.parametrize(
    "params",
    [
        {"action": "reconnect", "channel": {"id": "a"}},
        {"action": "reconnect", "channel": {"id": "a"}, "new_channel": {"type": "shared"}},
        {"action": "something_new", "channel": {"id": "a"}},
        [],
    ],
)
def test_unusable_channel_expire_falls_back_to_get_config(params: object) -> None:
    """A reconnect without a usable new channel, or an unknown action, means get_config."""
    ctl = parse_control(control("channel_expire", params))
    assert isinstance(ctl, ChannelExpire)
    assert ctl.action == "get_config"
    assert ctl.new_channel is None


def test_config_expire_and_server_restart() -> None:
    """config_expire and server_restart (any case) parse to their own types."""
    assert parse_control(control("config_expire", {})) == ConfigExpire()
    assert parse_control(control("SERVER_RESTART", {})) == ServerRestart()


def test_non_control_messages() -> None:
    """Ordinary messages, other modules and unknown pull commands are not control."""
    assert parse_control(parse_message(SEED_SAMPLE)) is None
    assert parse_control(control("user_status", {})) is None
    other = parse_message({"text": {"module_id": "rest", "command": "config_expire"}})
    assert parse_control(other) is None
