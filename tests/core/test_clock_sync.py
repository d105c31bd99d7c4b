"""Clock-skew correction with the controllable clock and a store whose clock is at a known offset."""

from __future__ import annotations

import contextlib
import datetime
import logging
from typing import Any, AsyncIterator, Callable

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.clock_sync import RETRY_AFTER_FAILURE, OffsetClock, OffsetEstimate, estimate_offset
from pyncette.errors import ConfigurationError
from pyncette.memory import MemoryRepository
from pyncette.testing import FakeClock, SkewedClock, run_until
from tests.core.conftest import START

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
S = datetime.timedelta(seconds=1)
MINUTE = 60 * S


class ClockedStore(MemoryRepository):
    """A memory store with a clock of its own: ``source()``, or the fake clock plus ``offset``.

    Each read can take a simulated round trip: the fake clock moves by ``delays[i] = (before,
    after)`` around the ``i``-th read. ``failing`` makes reads raise.
    """

    def __init__(self, clock: FakeClock | None, offset: datetime.timedelta = datetime.timedelta(0)) -> None:
        super().__init__()
        self.clock = clock
        self.offset = offset
        self.source: Callable[[], datetime.datetime] | None = None
        self.delays: list[tuple[datetime.timedelta, datetime.timedelta]] = []
        self.failing = False
        self.reads = 0

    async def server_time(self) -> datetime.datetime | None:
        self.reads += 1
        if self.failing:
            raise ConnectionError("store unreachable")
        before, after = self.delays.pop(0) if self.delays else (datetime.timedelta(0), datetime.timedelta(0))
        if self.source is not None:
            return self.source()
        assert self.clock is not None
        self.clock.advance(before)
        moment = self.clock.now() + self.offset
        self.clock.advance(after)
        return moment


def app_on(store: MemoryRepository, **options: Any) -> Pyncette:
    @contextlib.asynccontextmanager
    async def factory(**_: Any) -> AsyncIterator[MemoryRepository]:
        yield store

    options.setdefault("poll_interval", datetime.timedelta(hours=1))
    return Pyncette(repository_factory=factory, autoload_plugins=False, configure_signals=False, **options)


async def test_estimate_takes_the_midpoint_of_the_shortest_round_trip(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=7 * S)
    # Asymmetric round trips mislead the midpoint by half their asymmetry; the shortest misleads least.
    store.delays = [(3 * S, 1 * S), (S / 100, S / 50), (2 * S, 0 * S)]
    estimate = await estimate_offset(store, clock)
    assert estimate is not None
    assert estimate.round_trip == 3 * S / 100
    assert estimate.offset == 7 * S - (S / 50 - S / 100) / 2
    assert store.reads == 3


def test_the_correction_never_puts_the_clock_ahead_of_the_store_by_a_measurement_error() -> None:
    trip = S / 10
    assert OffsetEstimate(offset=S / 25, round_trip=trip).correction == datetime.timedelta(0)  # within +-trip/2
    assert OffsetEstimate(offset=-S / 25, round_trip=trip).correction == datetime.timedelta(0)
    assert OffsetEstimate(offset=MINUTE, round_trip=trip).correction == MINUTE - trip / 2
    assert OffsetEstimate(offset=-MINUTE, round_trip=trip).correction == -MINUTE - trip / 2
    assert OffsetEstimate(offset=MINUTE, round_trip=datetime.timedelta(0)).correction == MINUTE


async def test_a_store_without_a_clock_is_not_corrected(clock: FakeClock) -> None:
    assert await estimate_offset(MemoryRepository(), clock) is None
    async with app_on(MemoryRepository(), clock_sync=True).create(clock=clock) as ctx:
        assert ctx.clock is clock and ctx.clock_sync is None


async def test_a_worker_behind_the_store_runs_due_work_on_the_store_time(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=5 * MINUTE)  # this worker's clock is five minutes behind
    due = START + 5 * MINUTE - S
    runs: dict[bool, list[datetime.datetime]] = {False: [], True: []}
    for sync in (False, True):
        app = app_on(store, clock_sync=sync)

        @app.dynamic_task(name="job")
        async def job(context: Context, sync: bool = sync) -> None:
            runs[sync].append(context.scheduled_at)

        async with app.create(clock=clock) as ctx:
            if not sync:
                await ctx.schedule_task(job, "a", execute_at=due)
            await ctx.tick()
    assert runs == {False: [], True: [due]}


async def test_the_corrected_clock_drives_schedules_sleeps_and_run_until(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=-2 * MINUTE)  # this worker's clock is two minutes ahead
    app = app_on(store, clock_sync=True)
    slots: list[datetime.datetime] = []

    @app.task(interval=10 * S)
    async def job(context: Context) -> None:
        slots.append(context.scheduled_at)

    store_start = START - 2 * MINUTE
    async with app.create(clock=clock) as ctx:
        assert isinstance(ctx.clock, OffsetClock) and ctx.clock.now() == store_start
        assert await run_until(ctx, store_start + 30 * S) == 3
        assert clock.now() == START + 30 * S and ctx.last_tick == store_start + 30 * S
    assert slots == [store_start + 10 * S, store_start + 20 * S, store_start + 30 * S]


async def test_offset_clock_sleeps_until_the_base_clock_reaches_the_converted_deadline(clock: FakeClock) -> None:
    shifted = OffsetClock(clock, 10 * S)
    woken = anyio.Event()

    async def sleeper() -> None:
        await shifted.sleep_until(START + 60 * S)
        woken.set()

    async with anyio.create_task_group() as group:
        group.start_soon(sleeper)
        await anyio.wait_all_tasks_blocked()
        clock.set(START + 50 * S - datetime.timedelta(microseconds=1))
        await anyio.wait_all_tasks_blocked()
        assert not woken.is_set()
        clock.set(START + 50 * S)
        with anyio.fail_after(5):
            await woken.wait()


async def test_the_offset_is_re_estimated_every_interval(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=3 * S)
    app = app_on(store, clock_sync=True, clock_sync_interval=5 * MINUTE)
    async with app.create(clock=clock) as ctx:
        assert isinstance(ctx.clock, OffsetClock) and ctx.clock.offset == 3 * S
        assert store.reads == 3
        store.offset = 4 * S
        await run_until(ctx, ctx.clock.now() + 5 * MINUTE - S)
        assert (store.reads, ctx.clock.offset) == (3, 3 * S)
        # With an hour's poll interval, the loop still wakes for each estimate.
        await run_until(ctx, ctx.clock.now() + 20 * MINUTE)
        assert (store.reads, ctx.clock.offset) == (3 + 4 * 3, 4 * S)


async def test_a_large_offset_is_logged_as_a_warning(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pyncette.clock_sync")
    for offset, threshold in ((-90 * S, S), (S / 2, S), (-3 * S, 5 * S)):
        caplog.clear()
        app = app_on(ClockedStore(clock, offset=offset), clock_sync=True, clock_skew_threshold=threshold)
        async with app.create(clock=clock):
            pass
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if abs(offset) > threshold:
            assert len(warnings) == 1 and "90.000s ahead of the store's clock" in warnings[0], warnings
        else:
            assert warnings == []


async def test_a_failed_estimate_keeps_the_last_one_and_is_retried(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = ClockedStore(clock, offset=MINUTE)
    app = app_on(store, clock_sync=True, clock_sync_interval=5 * MINUTE)

    @app.task(interval=MINUTE)
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        assert isinstance(ctx.clock, OffsetClock)
        store.failing, store.offset = True, 2 * MINUTE
        clock.advance(5 * MINUTE)
        assert await ctx.tick() == 5  # the work of those five minutes still runs, on the last estimate
        assert ctx.clock.offset == MINUTE
        assert any("could not read the store's clock" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        store.failing = False
        clock.advance(RETRY_AFTER_FAILURE - S)
        await ctx.tick()
        assert ctx.clock.offset == MINUTE
        clock.advance(S)
        await ctx.tick()
        assert ctx.clock.offset == 2 * MINUTE


async def test_a_store_unreachable_at_start_leaves_the_clock_uncorrected_until_it_answers(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=MINUTE)
    store.failing = True
    async with app_on(store, clock_sync=True).create(clock=clock) as ctx:
        assert isinstance(ctx.clock, OffsetClock) and ctx.clock.offset == datetime.timedelta(0)
        store.failing = False
        clock.advance(RETRY_AFTER_FAILURE)
        await ctx.tick()
        assert ctx.clock.offset == MINUTE


async def test_clock_sync_false_never_reads_the_store_clock(clock: FakeClock) -> None:
    store = ClockedStore(clock, offset=MINUTE)
    async with app_on(store, clock_sync=False).create(clock=clock) as ctx:
        clock.advance(datetime.timedelta(hours=1))
        await ctx.tick()
        assert ctx.clock is clock
    assert store.reads == 0


async def test_by_default_virtual_clocks_are_left_alone_and_real_ones_corrected() -> None:
    fake = FakeClock(START)
    store = ClockedStore(fake, offset=MINUTE)
    async with app_on(store).create(clock=fake) as ctx:
        assert ctx.clock is fake
    assert store.reads == 0

    skewed = SkewedClock(-10 * MINUTE)  # ten minutes behind real time
    store = ClockedStore(None)
    store.source = lambda: datetime.datetime.now(UTC)
    async with app_on(store).create(clock=skewed) as ctx:
        assert isinstance(ctx.clock, OffsetClock) and ctx.clock.base is skewed
        assert abs(ctx.clock.now() - datetime.datetime.now(UTC)) < S
    assert store.reads == 3


@pytest.mark.parametrize(
    "options",
    [{"clock_sync": "yes"}, {"clock_sync_interval": 0}, {"clock_sync_interval": -1.0}, {"clock_skew_threshold": -S}],
)
def test_invalid_clock_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        Pyncette(backend="memory", **options)
