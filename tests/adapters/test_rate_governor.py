"""The rate governor: pacing, slow-down, method rests, stop on overload, the shared bucket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, insert, select

from connector.adapters.clocks import ManualClock, ScaledClock, VirtualClock
from connector.adapters.rate_governor import MemoryLedger, RateGovernor
from connector.adapters.store.database import make_engine
from connector.adapters.store.migrate import upgrade
from connector.adapters.store.rate_ledger import SqlBucketLedger, ledger_for
from connector.adapters.store.tables import sync_rate_bucket
from connector.core.operating_budget import OperatingBudget
from connector.core.rate_bucket import BucketProfile
from connector.errors import FatalPortalError, RejectedError, RetriableError

PROFILE = BucketProfile(rate=2.0, burst=50)


async def test_burst_then_paced() -> None:
    """The first 40 acquisitions pass at once; then each waits half a second more."""
    clock = ManualClock()
    governor = RateGovernor(PROFILE, clock=clock)
    start = clock.now()

    for _ in range(44):
        await governor.acquire("crm.deal.get")

    assert governor.stats.waited == 4
    assert pytest.approx(clock.now() - start) == 2.0


async def test_limit_answer_slows_down() -> None:
    """After QUERY_LIMIT_EXCEEDED the next request waits for a full bucket to drain slowly."""
    clock = ManualClock()
    governor = RateGovernor(PROFILE, clock=clock)

    await governor.on_error("x", RetriableError("x", code="QUERY_LIMIT_EXCEEDED"))
    await governor.acquire("x")

    assert governor.stats.limit_answers == 1
    assert clock.sleeps == [31.0]


async def test_operating_limit_rests_only_that_method() -> None:
    """OPERATION_TIME_LIMIT rests the method for its wait; other methods go on."""
    clock = ManualClock()
    governor = RateGovernor(PROFILE, clock=clock)
    error = RetriableError("x", code="OPERATION_TIME_LIMIT", retry_after=90.0)

    await governor.on_error("crm.deal.list", error)
    await governor.acquire("crm.deal.get")
    assert clock.sleeps == []
    await governor.acquire("crm.deal.list")

    assert clock.sleeps == [90.0]
    assert governor.stats.operating_pauses == 1


async def test_answers_near_the_budget_rest_the_method() -> None:
    """A successful answer reporting 90% of the budget spent rests the method until reset."""
    clock = ManualClock()
    governor = RateGovernor(PROFILE, clock=clock, budget=OperatingBudget(limit_s=480))
    body = {"result": [], "time": {"operating": 470, "operating_reset_at": clock.now() + 30}}

    governor.observe("batch", body)
    await governor.acquire("batch")

    assert clock.sleeps == [30.0]
    assert clock.now() + 0 == governor.known_reset_at("batch")


async def test_overload_stops_until_resumed() -> None:
    """OVERLOAD_LIMIT stops every method; resume() lets traffic flow again."""
    governor = RateGovernor(PROFILE, clock=ManualClock())
    await governor.on_error("x", FatalPortalError("blocked", code="OVERLOAD_LIMIT"))

    with pytest.raises(FatalPortalError, match="OVERLOAD_LIMIT"):
        await governor.acquire("anything")
    governor.resume()
    await governor.acquire("anything")


async def test_other_errors_change_nothing() -> None:
    """A rejected call neither slows down nor stops the governor."""
    clock = ManualClock()
    governor = RateGovernor(PROFILE, clock=clock)

    await governor.on_error("x", RejectedError("bad", code="ERROR_CORE"))
    await governor.acquire("x")

    assert (clock.sleeps, governor.stopped, governor.stats.limit_answers) == ([], None, 0)


async def test_concurrent_tasks_never_overflow_the_bucket() -> None:
    """Four tasks, 400 acquisitions: replaying the send times through the portal's bucket
    never passes its burst."""
    clock = VirtualClock()
    profile = BucketProfile(rate=2.0, burst=10)
    governor = RateGovernor(profile, clock=clock)
    sent: list[float] = []

    async def worker() -> None:
        for _ in range(100):
            await governor.acquire("x")
            sent.append(clock.now())

    await clock.gather(*(worker() for _ in range(4)))

    level, last = 0.0, None
    for when in sorted(sent):
        level = max(0.0, level - ((when - last) if last is not None else 0.0) * 2.0) + 1
        last = when
        assert level <= profile.burst
    assert len(sent) == 400


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An upgraded, empty database; disposed afterwards."""
    made = make_engine(db_url)
    upgrade(made)
    yield made
    made.dispose()


def test_shared_ledger_is_shared_between_workers(engine: Engine) -> None:
    """Two ledgers on one database row (two workers) fill the same bucket."""
    first = SqlBucketLedger(engine, "p.example")
    second = SqlBucketLedger(engine, "p.example")
    waits = [(first if i % 2 else second).reserve(1000.0, PROFILE) for i in range(44)]

    assert waits[:40] == [0.0] * 40
    assert waits[40:] == [0.5, 1.0, 1.5, 2.0]
    assert first.state().level == 44.0
    assert SqlBucketLedger(engine, "other.example").reserve(1000.0, PROFILE) == 0.0


def test_shared_ledger_penalty_is_seen_by_all(engine: Engine) -> None:
    """A limit answer seen by one worker slows every worker down."""
    SqlBucketLedger(engine, "p.example").penalize(1000.0, PROFILE)

    wait = SqlBucketLedger(engine, "p.example").reserve(1000.0, PROFILE)

    assert wait == 31.0
    assert (
        1000.0 + PROFILE.slowdown_s == SqlBucketLedger(engine, "p.example").state().slowdown_until
    )


def test_the_bucket_survives_a_restart_on_every_backend(engine: Engine) -> None:
    """SQLite included: a new process (a new ledger) goes on from the level the last one
    left, instead of an empty bucket that would overrun the portal's."""
    before = ledger_for(engine, "p.example")
    for _ in range(40):
        before.reserve(1000.0, PROFILE)
    after = ledger_for(engine, "p.example")  # "restarted" a moment later

    assert isinstance(after, SqlBucketLedger)
    assert after.reserve(1000.1, PROFILE) > 0.0  # it waits: the bucket is still full


async def test_governor_on_shared_ledger(engine: Engine) -> None:
    """The governor runs its blocking SQL ledger in a thread and still paces."""
    clock = ManualClock(start=5000.0)
    governor = RateGovernor(PROFILE, clock=clock, ledger=SqlBucketLedger(engine, "g.example"))

    for _ in range(42):
        await governor.acquire("x")
    await governor.on_error("x", RetriableError("x", code="QUERY_LIMIT_EXCEEDED"))

    assert clock.sleeps == [0.5, 0.5]  # sequential: each sleep lets the bucket drain
    assert SqlBucketLedger(engine, "g.example").state().slowdown_until > clock.now()


async def test_scaled_clock_runs_fast() -> None:
    """A scaled clock's sleep of 10 virtual seconds lasts a hundredth of that."""
    clock = ScaledClock(speed=1000.0)
    start = clock.now()

    await clock.sleep(10.0)

    assert clock.now() - start >= 10.0


def test_memory_ledger_state() -> None:
    """The in-memory ledger keeps its level between reservations."""
    ledger = MemoryLedger()
    ledger.reserve(0.0, PROFILE)
    ledger.reserve(0.0, PROFILE)

    assert ledger.state.level == 2.0


def test_chosen_ledger_counts_exactly_under_concurrent_use(engine: Engine) -> None:
    """Eight threads booking at once on a fresh portal (racing to create its row) lose no
    booking and never fail (MariaDB's gap-lock deadlock on the missing row is the race
    this repeats), with the ledger each backend uses and with the SQL ledger itself."""

    start = threading.Barrier(8)

    def book(ledger: SqlBucketLedger | MemoryLedger) -> None:
        start.wait(timeout=30)  # all eight reach the missing row at once
        for _ in range(5):
            ledger.reserve(1000.0, PROFILE)

    for round_ in range(6):
        chosen = ledger_for(engine, f"fresh{round_}.example")
        sql = SqlBucketLedger(engine, f"sql{round_}.example")
        for ledger in (chosen, sql):
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(book, [ledger] * 8))

        level = chosen.state.level if isinstance(chosen, MemoryLedger) else chosen.state().level
        assert level == 40.0
        assert sql.state().level == 40.0


@pytest.mark.backends("mariadb")
def test_booking_waits_out_a_peer_creating_the_row_under_its_gap_lock(engine: Engine) -> None:
    """A peer that locked the missing row (MariaDB's gap lock) and then creates it does not
    deadlock with our booking: ours waits, then books on top of the peer's level. A booking
    that locked the gap itself and then inserted would deadlock here, and one side fail."""
    ledger = SqlBucketLedger(engine, "gap.example")
    with engine.connect() as peer:
        peer.execute(
            select(sync_rate_bucket)
            .where(sync_rate_bucket.c.portal == "gap.example")
            .with_for_update()
        ).first()
        with ThreadPoolExecutor(max_workers=1) as pool:
            booking = pool.submit(ledger.reserve, 1000.0, PROFILE)
            time.sleep(0.5)  # the booking is now waiting on the peer's gap lock
            assert not booking.done()
            peer.execute(
                insert(sync_rate_bucket).values(
                    portal="gap.example", level=5.0, updated_at=1000.0, slowdown_until=0.0
                )
            )
            peer.commit()
            booking.result(timeout=30)

    assert ledger.state().level == 6.0


def test_booking_recreates_a_bucket_row_deleted_behind_its_back(engine: Engine) -> None:
    """The ledger remembers that it created the row; a row deleted since (an operator
    clearing the table) is created again and the booking counted, not lost."""
    ledger = SqlBucketLedger(engine, "wiped.example")
    ledger.reserve(1000.0, PROFILE)
    with engine.begin() as conn:
        conn.execute(sync_rate_bucket.delete())
    ledger.reserve(1000.0, PROFILE)

    assert ledger.state().level == 1.0
