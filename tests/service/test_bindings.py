"""Start-up: feature checks and idempotent offline bindings for every mapped event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connector.errors import ConfigError
from connector.service.bindings import ensure_bindings
from tests.service.drain_harness import CONNECTOR, Bench, make_bench


@pytest.fixture
async def bench(tmp_path: object) -> AsyncIterator[Bench]:
    b = await make_bench(f"sqlite:///{tmp_path}/c.db", bind=False)
    yield b
    await b.http.aclose()
    b.engine.dispose()


async def test_binds_every_mapped_event_once(bench: Bench) -> None:
    """First start binds ADD/UPDATE/DELETE of the four entities; a restart binds nothing."""
    first = await ensure_bindings(bench.client, bench.mappings, CONNECTOR)
    assert len(first.bound) == 12 and first.already == []
    assert first.features == {"rest_offline_extended": True, "rest_auth_connector": True}
    again = await ensure_bindings(bench.client, bench.mappings, CONNECTOR)
    assert again.bound == [] and sorted(again.already) == sorted(first.bound)
    rows = (await bench.client.call("event.get")).result
    ours = [r for r in rows if str(r.get("offline")) == "1"]
    assert {r["connector_id"] for r in ours} == {CONNECTOR}
    assert len(ours) == 12


async def test_a_binding_made_elsewhere_counts_as_bound(bench: Bench) -> None:
    """An event already bound (by an earlier version, by hand) is not an error."""
    await bench.client.call("event.bind", {"event": "ONCRMDEALADD", "event_type": "offline"})
    report = await ensure_bindings(bench.client, bench.mappings, CONNECTOR)
    assert "ONCRMDEALADD" in report.already and len(report.bound) == 11


@pytest.mark.parametrize(
    ("plan", "missing"), [("standard", "rest_offline_extended"), ("basic", "rest_auth_connector")]
)
async def test_a_plan_without_the_features_is_refused(
    bench: Bench, plan: str, missing: str
) -> None:
    """Without the extended queue or auth_connector the connector refuses with exit 2."""
    bench.emulator.set_plan(plan)
    with pytest.raises(ConfigError, match=missing) as info:
        await ensure_bindings(bench.client, bench.mappings, CONNECTOR)
    assert info.value.exit_code == 2


async def test_a_restart_is_one_request_before_the_first_page(bench: Bench) -> None:
    """Bindings in place: feature checks, event.get and the highest-ID probes of every
    entity travel in one batch, and backfill uses the probes instead of reading again."""
    from connector.service.backfill import run_backfill

    await ensure_bindings(bench.client, bench.mappings, CONNECTOR)
    ids = [bench.emulator.ui_add("crm.company", {"TITLE": f"C{n}"}) for n in range(3)]
    seen = len(bench.emulator.requests())

    async def bindings(probes: list[object]) -> object:
        return await ensure_bindings(bench.client, bench.mappings, CONNECTOR, probes=probes)  # type: ignore[arg-type]

    stats = await run_backfill(
        bench.client, bench.engine, bench.mappings, entities=["company"], bindings=bindings
    )
    start_up, *rest = bench.emulator.requests()[seen:]
    assert start_up.method == "batch"
    assert len(start_up.params["cmd"]) == 4  # 2 feature.get, event.get, 1 probe
    assert all(e.method == "batch" for e in rest)  # no probe of its own: pages only
    assert stats.entities["crm.company"].inserted == len(ids)
