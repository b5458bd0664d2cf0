"""The portal client against the in-process emulator: the issue's "done when" list."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from connector.adapters.clocks import ManualClock, VirtualClock
from connector.core.batch_commands import Command
from connector.core.id_window import IdWindow
from connector.core.operating_budget import OperatingBudget
from connector.errors import FatalPortalError, RetriableError
from tests.adapters.emulator_rig import CONNECTOR, EmulatorRig


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request at INFO; capturing 10,000 of them only costs time."""
    caplog.set_level(logging.WARNING, logger="httpx")


async def test_every_request_carries_auth_connector() -> None:
    """Reads, writes, event.* and batch all reach the portal with auth_connector, and the
    offline queue partition proves it: our binding sees the UI's change, not our own."""
    async with EmulatorRig() as rig:
        rig.emulator.seed_crm(companies=70)
        client = rig.client
        await client.call("event.bind", {"event": "ONCRMCOMPANYADD", "event_type": "offline"})
        await client.call("event.bind", {"event": "ONCRMCOMPANYUPDATE", "event_type": "offline"})
        await client.call("crm.company.add", {"fields": {"TITLE": "made by the connector"}})
        rig.emulator.ui_add("company", {"TITLE": "made in the UI"})
        await client.batch(
            [
                Command("a", "crm.company.get", {"id": 1}),
                Command("b", "crm.company.update", {"id": 2, "fields": {"TITLE": "renamed by us"}}),
            ]
        )
        await client.list_all(IdWindow("crm.company.list", {"select": ["ID"]}))
        rig.emulator.expire_tokens()
        got = await client.call("event.offline.get", {"clear": 0})
        await client.call("event.offline.list")

        log = rig.rest_log()
        assert len(log) >= 8
        assert [(e.method, e.auth_connector) for e in log if e.auth_connector != CONNECTOR] == []
        events = got.result["events"]
        assert len(events) == 1  # only the UI's add; our add and update were not echoed
        assert events[0]["EVENT_NAME"] == "ONCRMCOMPANYADD"


@pytest.mark.slow
async def test_governor_keeps_ten_thousand_requests_under_the_limit() -> None:
    """10,000 requests from 4 concurrent tasks: the emulator's limiter never answers 503.

    Time is virtual (it jumps when all four tasks wait), so the ~80 minutes of pacing at
    2 requests/s take only the time the requests themselves need."""
    clock = VirtualClock()
    async with EmulatorRig(clock) as rig:
        start = clock.now()

        async def worker() -> None:
            for _ in range(2_500):
                await rig.client.call("server.time")

        await clock.gather(*(worker() for _ in range(4)))
        limits = rig.emulator.portal().limits

        assert limits.rejected == 0
        assert [e for e in rig.emulator.log if e.status == 503] == []
        assert (
            len([e for e in rig.emulator.log if e.method == "server.time" and e.status == 200])
            == 10_000
        )
        # the portal's bucket was really the constraint: 2/s after a 40-request burst
        assert clock.now() - start >= (10_000 - 50) / limits.rate


async def test_without_the_governor_the_portal_says_too_many() -> None:
    """The same load without the governor draws 503 QUERY_LIMIT_EXCEEDED (the test can fail)."""
    async with EmulatorRig(governor=False, attempts=1) as rig:
        failures = 0
        for _ in range(80):
            try:
                await rig.client.call("server.time")
            except RetriableError as exc:
                assert exc.code == "QUERY_LIMIT_EXCEEDED"
                failures += 1

    assert failures == rig.emulator.portal().limits.rejected > 0


async def test_expired_token_mid_batch_paging_refreshes_once() -> None:
    """The token expires between two batch requests of a paged read: one refresh, and the
    read completes with every record."""
    expired = {"done": False}
    rig_box: dict[str, EmulatorRig] = {}

    async def expire_after_first_batch(response: httpx.Response) -> None:
        if not expired["done"] and response.request.url.path == "/rest/batch":
            expired["done"] = True
            rig_box["rig"].emulator.expire_tokens()

    async with EmulatorRig(hooks=[expire_after_first_batch]) as rig:
        rig_box["rig"] = rig
        made = rig.emulator.seed_crm(companies=2_600)["company"]
        rows = await rig.client.list_all(IdWindow("crm.company.list", {"select": ["ID", "TITLE"]}))

        assert made == [int(r["ID"]) for r in rows]
        assert rig.flow.refreshes == 1
        batches = rig.emulator.requests("batch")
        assert [e.error for e in batches if e.error] == ["expired_token"]
        assert len(batches) == 3  # 2 pages of 50×50, one of them sent twice


async def test_expired_token_inside_a_long_batch_refreshes_once() -> None:
    """120 commands (3 batch requests); the token dies after the first: all complete."""
    state = {"seen": 0}
    rig_box: dict[str, EmulatorRig] = {}

    async def expire_after_first(response: httpx.Response) -> None:
        if response.request.url.path == "/rest/batch":
            state["seen"] += 1
            if state["seen"] == 1:
                rig_box["rig"].emulator.expire_tokens()

    async with EmulatorRig(hooks=[expire_after_first]) as rig:
        rig_box["rig"] = rig
        ids = rig.emulator.seed_crm(companies=120)["company"]
        outcomes = await rig.client.batch(
            [Command(f"c{i}", "crm.company.get", {"id": i}) for i in ids]
        )

        assert all(o.ok for o in outcomes.values())
        assert ids == [int(o.result["ID"]) for o in outcomes.values()]
        assert rig.flow.refreshes == 1


async def test_operation_time_limit_waits_until_reset() -> None:
    """A method over its operating budget answers 429; the client waits exactly until
    operating_reset_at, then the call succeeds."""
    clock = ManualClock()
    # no proactive pause, so the portal's 429 is what the client reacts to
    async with EmulatorRig(clock, budget=OperatingBudget(safety=10.0)) as rig:
        rig.emulator.set_limits(costs={"crm.company.list": 500.0})
        first = await rig.client.call("crm.company.list", {"start": -1})
        assert first.time is not None
        reset_at = float(first.time["operating_reset_at"])
        limited_at = clock.now()
        await rig.client.call("crm.company.list", {"start": -1})

        calls = rig.emulator.requests("crm.company.list")
        assert [e.error for e in calls] == [None, "OPERATION_TIME_LIMIT", None]
        assert calls[2].time >= reset_at
        assert reset_at - limited_at in clock.sleeps  # one wait, exactly the server's


async def test_operating_budget_rests_the_method_before_the_portal_must() -> None:
    """With the default budget the client sees 500 s spent and rests the method itself:
    the portal never has to answer OPERATION_TIME_LIMIT."""
    clock = ManualClock()
    async with EmulatorRig(clock) as rig:
        rig.emulator.set_limits(costs={"crm.company.list": 500.0})
        first = await rig.client.call("crm.company.list", {"start": -1})
        await rig.client.call("crm.company.list", {"start": -1})

        assert first.time is not None
        assert [e for e in rig.emulator.log if e.error == "OPERATION_TIME_LIMIT"] == []
        assert clock.now() >= float(first.time["operating_reset_at"])


@pytest.mark.parametrize("status", [503, 401])
async def test_overload_stops_with_a_clear_error(status: int) -> None:
    """OVERLOAD_LIMIT (503 or 401) stops all traffic with a message naming it; nothing
    more is sent."""
    async with EmulatorRig() as rig:
        rig.emulator.set_faults(overload=True, overload_status=status)
        with pytest.raises(FatalPortalError) as info:
            await rig.client.call("crm.company.list")
        sent = len(rig.rest_log())
        with pytest.raises(FatalPortalError):
            await rig.client.batch([Command("a", "server.time")])

        assert "OVERLOAD_LIMIT" in str(info.value)
        assert "support" in str(info.value)
        assert 1 == sent == len(rig.rest_log())


async def test_paging_reads_every_record_with_few_requests() -> None:
    """ID-window paging in batches reads 2,501 records with 2 requests (2,500 per request)."""
    async with EmulatorRig() as rig:
        made: Any = rig.emulator.seed_crm(companies=2_501)["company"]
        rows = await rig.client.list_all(IdWindow("crm.company.list", {"select": ["ID"]}))

        assert made == [int(r["ID"]) for r in rows]
        assert len(rig.emulator.requests("batch")) == 2
