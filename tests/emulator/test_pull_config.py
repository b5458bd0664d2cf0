"""pull.application.config.get: the documented shape, channels, lifetime and switches."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from connector.emulator.portal import Portal
from connector.emulator.pull_channels import CHANNEL_TTL
from connector.emulator.registry import registry
from connector.emulator.rest_errors import RestError
from tests.emulator.pull_harness import APP, OTHER_APP, app_context, serve

SHARED_ID = re.compile(r"^[0-9a-f]{32}\.[0-9a-f]{40}$")
PRIVATE_ID = re.compile(r"^[0-9a-f]{32}:[0-9a-f]{32}\.[0-9a-f]{40}$")
SERVER_KEYS = {
    "version",
    "server_enabled",
    "long_polling",
    "long_polling_secure",
    "websocket_enabled",
    "websocket",
    "websocket_secure",
    "publish_enabled",
    "publish",
    "publish_secure",
    "clientId",
    "mode",
    "hostname",
    "config_timestamp",
}


def config(
    portal: Portal, client_id: str | None = APP, base: str = "http://127.0.0.1:8123", **params: str
) -> dict[str, object]:
    return portal.pull.config_for(app_context(client_id, base), params)


def test_method_is_registered_with_scope_pull() -> None:
    """config.get is in the registry under scope ``pull``."""
    found = registry.lookup("pull.application.config.get")
    assert found is not None
    assert found[2] == "pull"


def test_answer_has_documented_server_keys_and_both_channels() -> None:
    """server{...} has every documented key; shared/private channels have their shapes."""
    portal = Portal()
    result = config(portal)
    server = result["server"]
    assert isinstance(server, dict)
    assert set(server) == SERVER_KEYS
    assert server["clientId"] == portal.pull.push_client_id
    assert server["version"] == 4
    assert server["mode"] == "shared"
    channels = result["channels"]
    assert isinstance(channels, dict)
    shared, private = channels["shared"], channels["private"]
    assert shared["type"] == "shared" and SHARED_ID.match(shared["id"])
    assert private["type"] == "private" and PRIVATE_ID.match(private["id"])
    assert SHARED_ID.match(private["public_id"])
    assert private["id"].split(":")[1].split(".")[0] == private["public_id"].split(".")[0]


def test_channels_live_twelve_hours_in_portal_time() -> None:
    """start/end are ISO-8601 with the portal offset, 12 h apart, starting now."""
    portal = Portal()
    shared = config(portal)["channels"]["shared"]  # type: ignore[index]
    start = datetime.fromisoformat(shared["start"])
    end = datetime.fromisoformat(shared["end"])
    assert (end - start).total_seconds() == CHANNEL_TTL
    assert start.utcoffset() == portal.clock.tz.utcoffset(None)
    assert abs(start.timestamp() - portal.clock.now()) < 2


@pytest.mark.parametrize(
    ("base", "http", "ws"),
    [
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123/sub/", "ws://127.0.0.1:8123/subws/"),
        ("https://localhost:9443", "https://localhost:9443/sub/", "wss://localhost:9443/subws/"),
    ],
)
def test_urls_follow_the_request_base_url(base: str, http: str, ws: str) -> None:
    """Connection URLs use the host of the request and ws/wss matching http/https."""
    server = config(Portal(), base=base)["server"]
    assert isinstance(server, dict)
    assert server["long_polling"] == server["long_polling_secure"] == http
    assert server["websocket"] == server["websocket_secure"] == ws


def test_long_pooling_spelling_switch() -> None:
    """The misspelled ``long_pooling_secure`` key can replace or join the documented one."""
    portal = Portal()
    portal.pull.settings.long_polling_key = "misspelled"
    server = config(portal)["server"]
    assert isinstance(server, dict)
    assert "long_pooling_secure" in server and "long_polling_secure" not in server
    portal.pull.settings.long_polling_key = "both"
    server = config(portal)["server"]
    assert isinstance(server, dict)
    assert server["long_pooling_secure"] == server["long_polling_secure"]


def test_client_id_location_switch_and_personal_mode() -> None:
    """clientId can sit at the top level; personal mode drops it entirely."""
    portal = Portal()
    portal.pull.settings.client_id_location = "top"
    result = config(portal)
    assert result["clientId"] == portal.pull.push_client_id
    assert "clientId" not in result["server"]  # type: ignore[operator]
    portal.pull.settings.mode = "personal"
    result = config(portal)
    assert "clientId" not in result and "clientId" not in result["server"]  # type: ignore[operator]


def test_channels_are_per_app_and_stable_across_cache_modes() -> None:
    """The same app gets the same channels (CACHE=Y or N); another app gets its own."""
    portal = Portal()
    first = config(portal)["channels"]
    assert config(portal, CACHE="N")["channels"] == first
    assert config(portal, CACHE="Y")["channels"] == first
    other = config(portal, OTHER_APP)["channels"]
    assert other["shared"]["id"] != first["shared"]["id"]  # type: ignore[index]


def test_expired_channel_is_reopened_unless_reopen_n() -> None:
    """After 12 h on the test clock config.get opens a new channel; REOPEN=N keeps the old."""
    portal = Portal()
    old = config(portal)["channels"]["shared"]  # type: ignore[index]
    portal.pull.expire_channels()
    assert config(portal, REOPEN="N")["channels"]["shared"] == old  # type: ignore[index]
    new = config(portal)["channels"]["shared"]  # type: ignore[index]
    assert new["id"] != old["id"]
    assert datetime.fromisoformat(new["start"]) >= datetime.fromisoformat(old["end"])


def test_webhook_caller_is_refused() -> None:
    """Without an app context the method answers WRONG_AUTH_TYPE (401)."""
    with pytest.raises(RestError) as info:
        config(Portal(), client_id=None)
    assert info.value.code == "WRONG_AUTH_TYPE"
    assert info.value.status == 401


def test_config_over_http_points_at_the_serving_port() -> None:
    """Through a real HTTP call the answer's URLs name the port the request came in on."""
    with serve() as served:
        response = httpx.get(
            f"{served.http}/rest/pull.application.config.get.json", params={"client_id": APP}
        )
    assert response.status_code == 200
    server = response.json()["result"]["server"]
    assert server["websocket_secure"] == f"ws://127.0.0.1:{served.port}/subws/"
    assert server["long_polling_secure"] == f"http://127.0.0.1:{served.port}/sub/"
