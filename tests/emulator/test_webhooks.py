"""Incoming webhooks ``/rest/<user_id>/<secret>/<method>``."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from connector.emulator.app import Emulator
from tests.emulator.conftest import echo


async def test_webhook_calls_run_as_its_user(
    emulator: Emulator, http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """The secret URL authenticates as the webhook's user, with or without ``.json`` and
    a trailing slash; there is no app context."""
    method("test.echo", echo)
    hook = emulator.add_webhook(2)
    for path in (f"/rest/2/{hook.secret}/test.echo.json", f"/rest/2/{hook.secret}/test.echo/"):
        r = await http.get(path, params={"x": "1"})
        assert r.status_code == 200
        result = r.json()["result"]
        assert (result["user_id"], result["client_id"], result["via_webhook"]) == (2, None, True)
        assert result["params"] == {"x": "1"}
    assert (await http.get(f"/rest/2/{hook.secret}/profile")).json()["result"]["ADMIN"] is False


async def test_wrong_secret_or_user_is_invalid_credentials(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """A wrong secret, or the right secret under another user ID → 401 INVALID_CREDENTIALS."""
    hook = emulator.add_webhook(1)
    for path in ("/rest/1/wrongsecret/profile", f"/rest/2/{hook.secret}/profile"):
        r = await http.get(path)
        assert r.status_code == 401
        assert r.json() == {
            "error": "INVALID_CREDENTIALS",
            "error_description": "Invalid request credentials",
        }


@pytest.mark.parametrize(
    "name", ["event.bind", "event.get", "event.offline.get", "event.offline.list", "event.unbind"]
)
async def test_event_methods_are_refused(
    emulator: Emulator, http: httpx.AsyncClient, name: str
) -> None:
    """event.* need application context: 403 WRONG_AUTH_TYPE, even for an admin's hook."""
    hook = emulator.add_webhook(1)
    r = await http.post(
        f"/rest/1/{hook.secret}/{name}", data={"event": "ONCRMLEADADD", "event_type": "offline"}
    )
    assert r.status_code == 403
    assert r.json() == {
        "error": "WRONG_AUTH_TYPE",
        "error_description": "Current authorization type is denied for this method",
    }


async def test_webhook_scopes_limit_methods(
    emulator: Emulator, http: httpx.AsyncClient, method: Callable[..., None]
) -> None:
    """A webhook created without the crm scope cannot call crm-scoped methods."""
    method("test.crmonly", echo, scope="crm")
    narrow = emulator.add_webhook(1, scopes={"user"})
    wide = emulator.add_webhook(1)
    assert (await http.get(f"/rest/1/{narrow.secret}/test.crmonly")).status_code == 403
    assert (await http.get(f"/rest/1/{wide.secret}/test.crmonly")).status_code == 200


async def test_webhook_requests_are_logged_and_rate_limited(
    emulator: Emulator, http: httpx.AsyncClient
) -> None:
    """Webhook calls share the portal's bucket and are logged with the webhook user."""
    emulator.set_limits(burst=2, rate=0.0001)
    hook = emulator.add_webhook(1)
    codes = [(await http.get(f"/rest/1/{hook.secret}/server.time")).status_code for _ in range(3)]
    assert codes == [200, 200, 503]
    entries = emulator.requests("server.time")
    assert [e.webhook_user for e in entries] == [1, 1, 1]
    assert [e.kind for e in entries] == ["webhook"] * 3
    assert hook.secret not in repr([e.as_dict() for e in entries])
