"""Leaky bucket, operating time, fault switches and the ``time`` block."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.emulator import limits as limits_module
from connector.emulator.app import Emulator

TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating",
    "operating_reset_at",
}


async def call(
    http: httpx.AsyncClient, creds: dict[str, Any], method: str = "server.time", **params: Any
) -> httpx.Response:
    return await http.post(f"/rest/{method}", json={"auth": creds["access_token"], **params})


async def test_burst_then_503_query_limit_exceeded(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the clock held still, exactly ``burst`` requests pass, then 503
    QUERY_LIMIT_EXCEEDED "Too many requests"; after draining, requests pass again."""
    emulator.set_limits(burst=10, rate=2)
    frozen = emulator.clock.now()
    monkeypatch.setattr(emulator.clock, "now", lambda: frozen)
    codes = [(await call(http, app_creds)).status_code for _ in range(12)]
    assert codes == [200] * 10 + [503, 503]
    r = await call(http, app_creds)
    assert r.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    monkeypatch.setattr(emulator.clock, "now", lambda: frozen + 1.0)
    codes = [(await call(http, app_creds)).status_code for _ in range(3)]
    assert codes == [200, 200, 503]


async def test_accepted_requests_never_exceed_burst_plus_rate_times_window(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """From the request log: in every window [t_i, t_j] the accepted requests number at
    most burst + rate × (t_j − t_i); and the limiter did reject some."""
    burst, rate = 8, 2.0
    emulator.set_limits(burst=burst, rate=rate)
    for step in range(120):
        await call(http, app_creds)
        if step % 3 == 0:
            emulator.advance(0.25)
    entries = [e for e in emulator.requests("server.time")]
    accepted = [e.time for e in entries if e.accepted]
    assert any(e.accepted is False for e in entries)
    assert len(accepted) >= burst
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            window = accepted[j] - start
            count = j - i + 1
            assert count <= burst + rate * window + 1e-6, (i, j, count, window)
    rejected = [e for e in entries if e.accepted is False]
    assert all(e.status == 503 and e.error == "QUERY_LIMIT_EXCEEDED" for e in rejected)


async def test_enterprise_plan_has_a_larger_bucket(emulator: Emulator) -> None:
    """Plan profiles drive the limiter: Enterprise 250/5, Pro 50/2; overrides win."""
    portal = emulator.default_portal
    assert (portal.limits.burst, portal.limits.rate) == (50, 2.0)
    emulator.set_plan("enterprise")
    assert (portal.limits.burst, portal.limits.rate) == (250, 5.0)
    emulator.set_limits(burst=3)
    assert portal.limits.burst == 3


async def test_batch_costs_one_request(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """A batch of many commands takes one unit of the bucket."""
    emulator.set_limits(burst=2, rate=0.0001)
    cmd = {f"c{i}": "server.time" for i in range(40)}
    first = await call(http, app_creds, "batch", cmd=cmd)
    second = await call(http, app_creds, "batch", cmd=cmd)
    third = await call(http, app_creds, "batch", cmd=cmd)
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 503]
    assert len(first.json()["result"]["result"]) == 40


async def test_every_answer_carries_the_time_block(
    app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """time{start, finish, duration, processing, date_start, date_finish, operating,
    operating_reset_at} with ISO dates carrying the portal's offset."""
    body = (await call(http, app_creds)).json()
    assert set(body["time"]) == TIME_KEYS
    assert body["time"]["date_start"].endswith("+03:00")
    assert body["time"]["finish"] >= body["time"]["start"]
    assert isinstance(body["time"]["operating_reset_at"], int)


async def test_operating_time_limit_blocks_one_method_with_reset_time(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """A method billed 100 s per call passes 5 calls (500 s > 480 s), then 429
    OPERATION_TIME_LIMIT with operating_reset_at; other methods still work; after the
    10-minute window the method works again."""
    emulator.set_limits(costs={"profile": 100})
    operating = []
    for _ in range(5):
        r = await call(http, app_creds, "profile")
        assert r.status_code == 200
        operating.append(r.json()["time"]["operating"])
    assert operating == pytest.approx([100, 200, 300, 400, 500])
    reset_at = (await call(http, app_creds, "profile")).json()
    assert reset_at["error"] == "OPERATION_TIME_LIMIT"
    assert reset_at["time"]["operating_reset_at"] > emulator.clock.now()
    r = await call(http, app_creds, "profile")
    assert r.status_code == 429
    assert (await call(http, app_creds, "server.time")).status_code == 200
    emulator.advance(601)
    assert (await call(http, app_creds, "profile")).status_code == 200


async def test_a_shrunk_operating_window_lifts_the_block_when_its_oldest_basket_drops(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """Over the control surface: 4 s per call against a limit of 10 s in a 20 s window
    (baskets of 2 s). The third call in the window is refused, with the reset time of
    the first call's basket; at that time the method works again, not before."""
    set_up = await http.post(
        "/_emulator/limits",
        json={"costs": {"profile": 4}, "operating_limit": 10, "operating_window": 20},
    )
    assert set_up.json()["operating_window"] == 20
    start = emulator.clock.now()
    for _ in range(2):
        assert (await call(http, app_creds, "profile")).status_code == 200
    emulator.advance(3)  # a second basket (the first holds 8 s)
    assert (await call(http, app_creds, "profile")).status_code == 200  # 8 -> 12 s
    refused = (await call(http, app_creds, "profile")).json()
    assert refused["error"] == "OPERATION_TIME_LIMIT"
    assert refused["time"]["operating_reset_at"] == int(start + 20)
    emulator.advance(start + 19.5 - emulator.clock.now())
    assert (await call(http, app_creds, "profile")).status_code == 429
    emulator.advance(1)  # the first basket (8 s) drops out: 4 s left
    assert (await call(http, app_creds, "profile")).status_code == 200


async def test_operating_time_is_kept_per_caller(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """Another app keeps using a method the first app has exhausted (limits.md 2026);
    with operating_scope="portal" the budget is shared (the 2024 wording)."""
    other = emulator.install_app(scopes=("crm",))
    emulator.set_limits(costs={"profile": 481})
    await call(http, app_creds, "profile")
    assert (await call(http, app_creds, "profile")).status_code == 429
    assert (await call(http, other, "profile")).status_code == 200
    third = emulator.install_app(scopes=("crm",))
    emulator.default_portal.limits.operating_scope = "portal"
    await call(http, other, "profile")  # 481 s into the shared budget
    assert (await call(http, third, "profile")).status_code == 429


async def test_overload_limit_switch(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """OVERLOAD_LIMIT answers 503 by default (seed L2653) and any chosen status."""
    emulator.set_faults(overload=True)
    r = await call(http, app_creds)
    assert (r.status_code, r.json()["error"]) == (503, "OVERLOAD_LIMIT")
    emulator.set_faults(overload_status=401)
    assert (await call(http, app_creds)).status_code == 401
    emulator.clear_faults()
    assert (await call(http, app_creds)).status_code == 200


async def test_internal_errors_next_n_and_per_method(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """fail_next=2 fails the next two calls with 500; a method switch fails only it."""
    emulator.set_faults(fail_next=2)
    codes = [(await call(http, app_creds)).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    emulator.set_faults(fail_methods={"profile": 1})
    r = await call(http, app_creds, "profile")
    assert r.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert (await call(http, app_creds, "server.time")).status_code == 200
    assert (await call(http, app_creds, "profile")).status_code == 200
    emulator.set_faults(fail_methods={"profile": None})
    assert [(await call(http, app_creds, "profile")).status_code for _ in range(3)] == [500] * 3


async def test_forced_operation_limit_on_a_method(
    emulator: Emulator, app_creds: dict[str, Any], http: httpx.AsyncClient
) -> None:
    """block_methods forces 429 OPERATION_TIME_LIMIT until unblocked."""
    emulator.set_faults(block_methods={"server.time": True})
    assert (await call(http, app_creds)).status_code == 429
    emulator.set_faults(block_methods={"server.time": False})
    assert (await call(http, app_creds)).status_code == 200


async def test_slow_replies_wait_the_configured_delay(
    emulator: Emulator,
    app_creds: dict[str, Any],
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delay (global plus per method) is awaited before the method runs."""
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(limits_module, "sleep", fake_sleep)
    emulator.set_faults(delay=0.5, method_delays={"profile": 2.0})
    await call(http, app_creds, "server.time")
    await call(http, app_creds, "profile")
    assert waited == [0.5, 2.5]
