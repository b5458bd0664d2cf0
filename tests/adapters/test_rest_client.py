"""The REST client on a MockTransport: auth_connector everywhere, errors, retries, batch, paging."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from connector.adapters.clocks import ManualClock
from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rate_governor import RateGovernor
from connector.adapters.rest_client import RestClient, RetryPolicy
from connector.core.batch_commands import Command, result_ref
from connector.core.id_window import IdWindow
from connector.core.rate_bucket import BucketProfile
from connector.errors import AmbiguousError, FatalPortalError, RejectedError, RetriableError
from tests.adapters.portal_fakes import OAUTH, REST, FakePortal, MemoryTokens, stored


class Rig:
    """A client wired to a FakePortal with a manual clock and a governor."""

    def __init__(
        self, portal: FakePortal | None = None, *, governor: bool = True, attempts: int = 6
    ) -> None:
        self.portal = portal or FakePortal()
        self.clock = ManualClock()
        self.http = httpx.AsyncClient(transport=self.portal.transport())
        self.flow = OAuthFlow(
            MemoryTokens(stored()),
            http=self.http,
            oauth_url=OAUTH,
            client_id="c",
            client_secret="s3cr3t-value",
        )
        self.governor = RateGovernor(BucketProfile(rate=2, burst=50), clock=self.clock)
        self.client = RestClient(
            self.http,
            REST,
            connector_id="erp",
            auth=self.flow,
            governor=self.governor if governor else None,
            clock=self.clock,
            retry=RetryPolicy(attempts=attempts),
            rng=random.Random(1),
        )

    async def __aenter__(self) -> Rig:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()


def rows(n: int) -> list[dict[str, Any]]:
    return [{"ID": str(i), "TITLE": f"c{i}"} for i in range(1, n + 1)]


async def test_every_call_carries_auth_connector() -> None:
    """Reads, writes, event.* and batch (outer and each command) all carry auth_connector."""
    async with Rig() as rig:
        await rig.client.call("crm.company.add", {"fields": {"TITLE": "x"}})
        await rig.client.call("event.offline.get", {"clear": 0})
        await rig.client.call("event.bind", {"event": "ONCRMCOMPANYADD"})
        await rig.client.call("crm.company.update", {"id": 1, "auth_connector": "wrong"})
        outcomes = await rig.client.batch(
            [Command("a", "crm.company.get", {"id": 1}), Command("b", "event.offline.clear")]
        )

    assert all(s.params.get("auth_connector") == "erp" for s in rig.portal.seen)
    assert len(rig.portal.seen) == 5
    assert all(o.ok for o in outcomes.values())  # the fake refuses commands without it


def test_connector_id_is_required() -> None:
    """A client without a connector id cannot be made."""
    with pytest.raises(ValueError, match="auth_connector"):
        RestClient(httpx.AsyncClient(), REST, connector_id="")


async def test_error_inside_200_is_rejected_without_retry() -> None:
    """An error in an HTTP 200 body raises RejectedError and is not retried."""
    async with Rig() as rig:
        rig.portal.script("crm.deal.add", (200, {"error": "ERROR_CORE", "error_description": "x"}))
        with pytest.raises(RejectedError):
            await rig.client.call("crm.deal.add", {"fields": {}})

    assert len(rig.portal.requests_for("crm.deal.add")) == 1


async def test_rate_limit_answer_is_retried_with_backoff_and_slows_down() -> None:
    """QUERY_LIMIT_EXCEEDED twice: retried after ≥1 s backoffs, governor slows down."""
    async with Rig() as rig:
        limit = (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many"})
        rig.portal.script("crm.deal.get", limit, limit)
        answer = await rig.client.call("crm.deal.get", {"id": 1})

    assert answer.result == {"method": "crm.deal.get"}
    assert len(rig.portal.requests_for("crm.deal.get")) == 3
    assert rig.governor.stats.limit_answers == 2
    assert rig.governor.stats.waited == 2  # the slowed-down bucket held both retries back
    backoffs = [wait for wait in rig.clock.sleeps if wait < 3.0]
    assert len(backoffs) == 2
    assert 1.0 <= backoffs[0] < 2.0 <= backoffs[1] < 3.0


async def test_operation_time_limit_waits_until_reset() -> None:
    """429 OPERATION_TIME_LIMIT: the retry goes out no earlier than operating_reset_at."""
    async with Rig() as rig:
        reset_at = rig.clock.now() + 123
        rig.portal.script(
            "crm.deal.list",
            (
                429,
                {
                    "error": "OPERATION_TIME_LIMIT",
                    "error_description": "Method is blocked due to operation time limit.",
                    "time": {"operating": 481, "operating_reset_at": reset_at},
                },
            ),
        )
        await rig.client.call("crm.deal.list")

        assert rig.clock.now() >= reset_at
        # the method rested; other methods were never held back by it
        assert rig.governor.budget.wait_for("crm.deal.get", rig.clock.now()) == 0.0


async def test_overload_stops_all_traffic() -> None:
    """OVERLOAD_LIMIT raises a fatal error and no further request leaves the client."""
    async with Rig() as rig:
        rig.portal.script(
            "crm.deal.get", (503, {"error": "OVERLOAD_LIMIT", "error_description": "blocked"})
        )
        with pytest.raises(FatalPortalError, match="OVERLOAD_LIMIT"):
            await rig.client.call("crm.deal.get")
        with pytest.raises(FatalPortalError, match="stopped"):
            await rig.client.call("crm.deal.list")

    assert [s.method for s in rig.portal.seen] == ["crm.deal.get"]


async def test_retries_give_up_after_the_attempts() -> None:
    """A portal that keeps failing with 500 is tried `attempts` times, then the error rises."""
    async with Rig(attempts=3) as rig:
        fail = (500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"})
        rig.portal.script("crm.deal.get", fail, fail, fail, fail)
        with pytest.raises(RetriableError):
            await rig.client.call("crm.deal.get")

    assert len(rig.portal.requests_for("crm.deal.get")) == 3
    assert len(rig.clock.sleeps) == 2
    assert rig.clock.sleeps[1] > rig.clock.sleeps[0] - 1.0  # exponential, jitter ≤ 1 s


async def test_server_wait_is_honoured_and_capped() -> None:
    """Retry-After sets the wait; an absurd one is capped by the policy."""
    async with Rig() as rig:
        rig.portal.retry_after = "3600"
        rig.portal.script("crm.deal.get", (503, {"error": "QUERY_LIMIT_EXCEEDED"}))
        rig.client.retry = RetryPolicy(max_server_wait_s=5.0)
        await rig.client.call("crm.deal.get")

    assert rig.clock.sleeps[0] == 5.0


async def test_network_errors_are_retried_and_redacted() -> None:
    """A refused connection is retried; an exhausted retry's message holds no token."""
    async with Rig(attempts=2) as rig:
        rig.portal.network_errors = 1
        await rig.client.call("crm.deal.get")
        rig.portal.network_errors = 5
        with pytest.raises(RetriableError) as info:
            await rig.client.call("crm.deal.get")

    assert info.value.code == "NETWORK"
    assert "access-0" not in str(info.value)


async def test_batch_splits_into_requests_of_fifty() -> None:
    """120 commands go out as 3 batch requests; every outcome comes back under its key."""
    async with Rig() as rig:
        commands = [Command(f"c{i}", "crm.deal.get", {"id": i}) for i in range(120)]
        outcomes = await rig.client.batch(commands)

    batches = rig.portal.requests_for("batch")
    assert [len(b.params["cmd"]) for b in batches] == [50, 50, 20]
    assert [c.key for c in commands] == list(outcomes)
    assert all(b.params["halt"] == "0" for b in batches)


async def test_batch_command_errors_stay_per_command() -> None:
    """One failing command does not fail the batch; its outcome carries the error."""
    async with Rig() as rig:
        rig.portal.script(
            "batch",
            (
                200,
                {
                    "result": {
                        "result": {"a": {"ID": 1}},
                        "result_error": {"b": {"error": "", "error_description": "Not found"}},
                        "result_total": [],
                        "result_next": [],
                        "result_time": [],
                    }
                },
            ),
        )
        out = await rig.client.batch(
            [Command("a", "crm.deal.get", {"id": 1}), Command("b", "crm.deal.get", {"id": 2})]
        )

    assert out["a"].ok
    assert isinstance(out["b"].error, RejectedError)


async def test_batch_keys_must_be_unique_across_chunks() -> None:
    """Duplicate keys are refused before anything is sent."""
    async with Rig() as rig:
        with pytest.raises(ValueError):
            await rig.client.batch([Command("a", "x.y"), Command("a", "x.z")])
    assert rig.portal.seen == []


async def test_result_chaining_reaches_the_portal() -> None:
    """A $result reference travels to the portal intact inside the command."""
    async with Rig() as rig:
        await rig.client.batch(
            [
                Command("a", "crm.deal.list"),
                Command("b", "crm.deal.get", {"id": result_ref("a", 0, "ID")}),
            ]
        )

    cmd = rig.portal.requests_for("batch")[0].params["cmd"]["b"]
    assert "%24result%5Ba%5D%5B0%5D%5BID%5D" in cmd


@pytest.mark.parametrize(("count", "requests"), [(0, 1), (49, 1), (50, 1), (2600, 2), (2500, 2)])
async def test_batched_id_window_reads_everything(count: int, requests: int) -> None:
    """ID-window paging in batches reads every row once, in order, with few requests."""
    portal = FakePortal(rows=rows(count))
    async with Rig(portal) as rig:
        got = await rig.client.list_all(IdWindow("crm.company.list", {"select": ["TITLE"]}))

    assert [r["ID"] for r in portal.rows] == [r["ID"] for r in got]
    assert requests == len(portal.requests_for("batch"))


async def test_unbatched_id_window_pages_one_by_one() -> None:
    """Without batch each page is one list call with >ID, order and start=-1."""
    portal = FakePortal(rows=rows(120))
    async with Rig(portal) as rig:
        got = await rig.client.list_all(IdWindow("crm.company.list"), batched=False)

    calls = portal.requests_for("crm.company.list")
    assert len(got) == 120
    assert len(calls) == 3
    assert calls[1].params["order"] == {"ID": "ASC"}
    assert calls[1].params["start"] == "-1"
    assert calls[1].params["filter"][">ID"] == "50"


async def test_paging_loop_is_detected() -> None:
    """A portal that ignores the >ID filter is caught instead of paging forever."""
    portal = FakePortal()
    stuck = {"result": rows(50), "time": {}}
    portal.script("crm.company.list", (200, stuck), (200, stuck))
    async with Rig(portal) as rig:
        with pytest.raises(RejectedError, match="loop"):
            await rig.client.list_all(IdWindow("crm.company.list"), batched=False)


async def test_without_governor_nothing_waits() -> None:
    """No governor: requests go out back to back (used to show what the governor prevents)."""
    async with Rig(governor=False) as rig:
        for _ in range(60):
            await rig.client.call("crm.deal.get")

    assert rig.clock.sleeps == []
    assert rig.client.requests_sent == 60


async def test_governor_paces_a_burst() -> None:
    """60 quick calls: the first 40 go at once, the rest wait for the bucket to drain."""
    async with Rig() as rig:
        start = rig.clock.now()
        for _ in range(60):
            await rig.client.call("crm.deal.get")

    assert rig.governor.stats.acquired - rig.governor.stats.waited == 40
    assert rig.clock.now() - start == pytest.approx(20 / 2.0)


async def test_a_reserving_get_is_not_retried_after_an_answer_that_may_hide_its_work() -> None:
    """A 502 after event.offline.get (without process_id) may have reserved records: it
    raises AmbiguousError at once; the same 502 on a re-read is retried as usual."""
    async with Rig(attempts=3) as rig:
        gateway = (502, {"error": "BAD_GATEWAY", "error_description": "proxy"})
        ok = (200, {"result": {"events": [], "process_id": None}})
        rig.portal.script("event.offline.get", gateway, gateway, ok)
        with pytest.raises(AmbiguousError):
            await rig.client.call("event.offline.get", {"clear": 0, "limit": 500})
        assert len(rig.portal.requests_for("event.offline.get")) == 1
        await rig.client.call("event.offline.get", {"process_id": "p1", "clear": 0})

    assert len(rig.portal.requests_for("event.offline.get")) == 3
