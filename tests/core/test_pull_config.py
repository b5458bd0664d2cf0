"""Parsing pull.application.config.get and building the connection URLs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.core.pull_config import (
    Channel,
    Cursor,
    PullConfigError,
    connection_url,
    parse_config,
    parse_time,
    renew_at,
)


def answer(**server: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 4,
        "long_polling": "http://rt.example/sub/",
        "long_polling_secure": "https://rt.example/sub/",
        "websocket": "ws://rt.example/subws/",
        "websocket_secure": "wss://rt.example/subws/",
        "clientId": "43253464643",
    }
    base.update(server)
    return {
        "result": {
            "server": {k: v for k, v in base.items() if v is not None},
            "channels": {
                "private": {
                    "id": "p1.sig",
                    "start": "2017-06-28T12:00:00+02:00",
                    "end": "2017-06-29T00:00:00+02:00",
                    "type": "private",
                },
                "shared": {
                    "id": "0d875ab13a17a97fc2f5",
                    "start": "2017-06-28T12:04:00+02:00",
                    "end": "2017-06-29T00:04:00+02:00",
                },
            },
        }
    }


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_seed_answer_parses() -> None:
    """The seed's sample: version, clientId, both channels (shared first) with times."""
    config = parse_config(answer())
    assert config.version == 4
    assert config.client_id == "43253464643"
    assert [c.id for c in config.channels] == ["0d875ab13a17a97fc2f5", "p1.sig"]
    assert config.channels[0] == Channel(
        "0d875ab13a17a97fc2f5",
        "shared",
        datetime(2017, 6, 28, 10, 4, tzinfo=UTC),
        datetime(2017, 6, 28, 22, 4, tzinfo=UTC),
    )
    assert config.earliest_end() == datetime(2017, 6, 28, 22, 0, tzinfo=UTC)
    assert config.supported


def test_result_wrapper_is_optional() -> None:
    """The ``result`` object itself (without the envelope) parses the same."""
    assert parse_config(answer()["result"]) == parse_config(answer())


def test_long_pooling_spelling_is_accepted() -> None:
    """Newer servers spell the key ``long_pooling_secure``; it is read too."""
    config = parse_config(
        answer(long_polling_secure=None, long_polling=None, long_pooling_secure="https://lp/x/")
    )
    assert config.long_polling_base() == "https://lp/x/"


def test_client_id_at_top_level_or_absent() -> None:
    """``clientId`` is read at the top level too, and absent means not in the URL."""
    raw = answer(clientId=None)
    raw["result"]["clientId"] = "top"
    assert parse_config(raw).client_id == "top"
    box = parse_config(answer(clientId=None))
    assert box.client_id is None
    assert "clientId" not in query(connection_url("wss://rt/sub/", box))


def test_websocket_url_has_all_channels_client_id_and_format() -> None:
    """CHANNEL_ID joins every channel with ``/``; clientId and format=json are added."""
    config = parse_config(answer())
    url = connection_url(config.websocket_base() or "", config)
    assert url.startswith("wss://rt.example/subws/?")
    assert query(url) == {
        "CHANNEL_ID": ["0d875ab13a17a97fc2f5/p1.sig"],
        "clientId": ["43253464643"],
        "format": ["json"],
    }


def test_version_3_has_no_format_and_resumes_by_mid() -> None:
    """Version 3: no format=json; the history cursor is ``mid``."""
    config = parse_config(answer(version=3))
    url = connection_url("https://lp/sub/", config, Cursor(mid="145261", tag="t", time="x"))
    assert query(url) == {
        "CHANNEL_ID": ["0d875ab13a17a97fc2f5/p1.sig"],
        "clientId": ["43253464643"],
        "mid": ["145261"],
    }


def test_version_2_resumes_by_tag_and_time() -> None:
    """Version ≤ 2 uses ``tag`` and ``time`` instead of ``mid``."""
    config = parse_config(answer(version="2"))
    q = query(connection_url("https://lp/sub/", config, Cursor(mid="m", tag="672", time="T")))
    assert (q["tag"], q["time"], "mid" in q) == (["672"], ["T"], False)


def test_existing_query_is_kept() -> None:
    """A base URL that already has a query keeps it and gets ``&`` parameters."""
    config = parse_config(answer())
    url = connection_url("https://lp/sub/?site=s1", config)
    assert query(url)["site"] == ["s1"]
    assert query(url)["format"] == ["json"]


def test_version_5_is_unsupported() -> None:
    """Version ≥ 5 (JSON-RPC) parses but is marked unsupported and builds no URL."""
    config = parse_config(answer(version=5))
    assert not config.supported
    with pytest.raises(PullConfigError):
        connection_url("wss://rt/sub/", config)


def test_secure_preferred_and_never_downgraded_across_a_network() -> None:
    """Secure URLs are preferred; a plain ws:// or http:// one is used only for a loopback
    host — a server offering only plain URLs elsewhere leaves the safety poll alone."""
    config = parse_config(answer())
    assert config.websocket_base() == "wss://rt.example/subws/"
    assert config.websocket_base(prefer_secure=False) == "wss://rt.example/subws/"
    with pytest.raises(PullConfigError, match="does not downgrade"):
        parse_config(answer(websocket_secure=None, long_polling_secure=None))
    local = parse_config(
        answer(
            websocket_secure=None,
            long_polling_secure=None,
            websocket="ws://127.0.0.1:8024/subws/",
            long_polling="http://localhost:8024/sub/",
        )
    )
    assert local.websocket_base() == "ws://127.0.0.1:8024/subws/"
    assert local.long_polling_base() == "http://localhost:8024/sub/"


def test_websocket_disabled_means_no_websocket() -> None:
    """``websocket_enabled: false`` (or "N") leaves only long polling."""
    assert parse_config(answer(websocket_enabled=False)).websocket_base() is None
    assert parse_config(answer(websocket_enabled="N")).websocket_base() is None


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"result": []},
        {"result": {"channels": {}}},
        {
            "result": {
                "server": {"version": "x", "websocket": "ws://a"},
                "channels": {"s": {"id": "1"}},
            }
        },
        {"result": {"server": {"version": 4, "websocket": "ws://a"}, "channels": {"s": {"x": 1}}}},
        {"result": {"server": {"version": 4}, "channels": {"s": {"id": "1"}}}},
    ],
)
def test_unusable_answers_raise(raw: dict[str, Any]) -> None:
    """No server, no version, no channel id or no URL at all raises PullConfigError."""
    with pytest.raises(PullConfigError):
        parse_config(raw)


def test_replace_channel_by_id_then_type() -> None:
    """replace_channel swaps by id, else by type, else appends."""
    config = parse_config(answer())
    new = Channel("new.sig", "shared")
    assert [c.id for c in config.replace_channel("0d875ab13a17a97fc2f5", new).channels] == [
        "new.sig",
        "p1.sig",
    ]
    assert [c.id for c in config.replace_channel("unknown", new).channels] == ["new.sig", "p1.sig"]
    other = Channel("o.sig", "other")
    assert len(config.replace_channel(None, other).channels) == 3


def test_renew_at_uses_earliest_end_minus_margin_or_12h_default() -> None:
    """Renewal is due ``margin`` before the first channel end, or 12 h after fetching."""
    config = parse_config(answer())
    end = datetime(2017, 6, 28, 22, 0, tzinfo=UTC).timestamp()
    assert renew_at(config, fetched_at=0.0, margin=300.0) == end - 300.0
    raw = answer()
    for channel in raw["result"]["channels"].values():
        del channel["end"]
    assert renew_at(parse_config(raw), fetched_at=1000.0, margin=60.0) == 1000.0 + 12 * 3600 - 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2017-06-28T12:04:00+02:00", datetime(2017, 6, 28, 10, 4, tzinfo=UTC)),
        ("2017-06-28T12:04:00", datetime(2017, 6, 28, 12, 4, tzinfo=UTC)),
        (1498651440, datetime(2017, 6, 28, 12, 4, tzinfo=UTC)),
        ("soon", None),
        (None, None),
        (True, None),
        (10**30, None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    """ISO dates with or without offset and unix times parse; the rest gives None."""
    assert parse_time(value) == expected
