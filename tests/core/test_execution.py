"""Execution modes, failure modes, retries, heartbeats, middlewares, fixtures and shutdown."""

from __future__ import annotations

import datetime
import itertools
from typing import Any, Awaitable, Callable, Sequence

import anyio
import pytest

from pyncette import Context, ExecutionMode, FailureMode, LeaseLostException
from pyncette.hookspecs import hookimpl
from pyncette.model import Completion, TaskKey
from pyncette.repository import Repository, RepositoryWrapper
from pyncette.testing import FakeClock, run_until
from pyncette.utils import with_heartbeat
from tests.core.conftest import START, make_app

pytestmark = pytest.mark.anyio

S = datetime.timedelta(seconds=1)


async def test_at_most_once_commits_before_running(clock: FakeClock) -> None:
    app = make_app()
    observed = []

    @app.task(interval=10 * S, execution_mode=ExecutionMode.AT_MOST_ONCE)
    async def job(context: Context) -> None:
        state = await context.app_context.repository.get_task(TaskKey("job"))
        observed.append((state.next_run, state.locked_by, context.fencing_token))
        raise RuntimeError("boom")

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 20 * S)
    assert observed == [(START + 20 * S, None, None), (START + 30 * S, None, None)]


async def test_at_least_once_commits_after_running_with_a_lease(clock: FakeClock) -> None:
    app = make_app()
    observed = []

    @app.task(interval=10 * S)
    async def job(context: Context) -> None:
        state = await context.app_context.repository.get_task(TaskKey("job"))
        observed.append((state.next_run, state.locked_by == app.worker_id, context.fencing_token == state.fencing_token))

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 10 * S)
        state = await ctx.repository.get_task(TaskKey("job"))
    assert observed == [(START + 10 * S, True, True)]
    assert state is not None and state.next_run == START + 20 * S and state.locked_by is None


async def _failing_app(clock: FakeClock, **options: Any) -> tuple[list[tuple[datetime.datetime, datetime.datetime, int]], Any]:
    app = make_app()
    attempts: list[tuple[datetime.datetime, datetime.datetime, int]] = []

    @app.task(interval=60 * S, lease_duration=5 * S, **options)
    async def job(context: Context) -> None:
        attempts.append((clock.now(), context.scheduled_at, context.attempt))
        raise RuntimeError("always fails")

    return attempts, app


async def test_failure_mode_none_retries_after_the_lease_expires(clock: FakeClock) -> None:
    attempts, app = await _failing_app(clock, failure_mode=FailureMode.NONE)
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 71 * S)
        found = await ctx.get_task("job")
    assert attempts == [
        (START + 60 * S, START + 60 * S, 1),
        (START + 65 * S, START + 60 * S, 2),
        (START + 70 * S, START + 60 * S, 3),
    ]
    # The count is stored with the instance (a restarted worker continues it) and the retry waits
    # for the end of the failed attempt's lease.
    assert found is not None and found.status is not None
    assert (found.status.attempt, found.status.next_run, found.status.given_up) == (3, START + 75 * S, 0)


async def test_failure_mode_none_with_max_attempts_gives_up_after_the_last(clock: FakeClock) -> None:
    attempts, app = await _failing_app(clock, failure_mode=FailureMode.NONE, max_attempts=3)
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 121 * S)
        found = await ctx.get_task("job")
    assert attempts == [
        (START + 60 * S, START + 60 * S, 1),
        (START + 65 * S, START + 60 * S, 2),
        (START + 70 * S, START + 60 * S, 3),
        (START + 120 * S, START + 120 * S, 1),
    ]
    assert found is not None and found.status is not None
    assert (found.status.attempt, found.status.given_up, found.status.next_run) == (1, 1, START + 125 * S)


async def test_failure_mode_none_attempt_survives_a_worker_restart(clock: FakeClock) -> None:
    from pyncette.memory import MemoryRepository

    shared = MemoryRepository()
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(**_: object):  # type: ignore[no-untyped-def]
        yield shared

    seen: list[int] = []
    for until in (START + 61 * S, START + 66 * S):
        app = make_app(backend=None, repository_factory=factory)

        @app.task(name="job", interval=60 * S, lease_duration=5 * S)
        async def job(context: Context) -> None:
            seen.append(context.attempt)
            raise RuntimeError("fails")

        async with app.create(clock=clock) as ctx:
            await run_until(ctx, until)
    assert seen == [1, 2]


async def test_failure_mode_unlock_retries_on_the_next_poll(clock: FakeClock) -> None:
    attempts, app = await _failing_app(clock, failure_mode=FailureMode.UNLOCK, max_attempts=4)
    async with app.create(clock=clock) as ctx:
        await ctx.tick()
        clock.set(START + 60 * S)
        await ctx.tick()
        found = await ctx.get_task("job")
    assert [(t, slot, n) for t, slot, n in attempts] == [(START + 60 * S, START + 60 * S, n) for n in (1, 2, 3, 4)]
    assert found is not None and found.status is not None
    assert found.status.given_up == 1 and found.status.next_run == START + 120 * S and found.status.attempt == 0


async def test_failure_mode_commit_moves_on(clock: FakeClock) -> None:
    attempts, app = await _failing_app(clock, failure_mode=FailureMode.COMMIT)
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 125 * S)
        found = await ctx.get_task("job")
    assert [slot for _, slot, _ in attempts] == [START + 60 * S, START + 120 * S]
    assert found is not None and found.status is not None and found.status.given_up == 2


async def test_retry_back_off_is_exponential_and_capped(clock: FakeClock) -> None:
    attempts, app = await _failing_app(
        clock, failure_mode=FailureMode.UNLOCK, max_attempts=5, retry_delay=2 * S, retry_backoff=3, retry_max_delay=10 * S
    )
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 100 * S)
    times = [t for t, _, _ in attempts]
    assert [int((b - a).total_seconds()) for a, b in itertools.pairwise(times)] == [2, 6, 10, 10]
    assert [n for _, _, n in attempts] == [1, 2, 3, 4, 5]
    assert all(slot == START + 60 * S for _, slot, _ in attempts)


async def test_endless_retries_stay_at_the_maximum_delay_when_the_back_off_overflows(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # 10 ** 309 overflows a float: the 310th retry's back-off cannot be computed, only capped.
    attempts, app = await _failing_app(clock, failure_mode=FailureMode.UNLOCK, retry_delay=S, retry_backoff=10, retry_max_delay=S)
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 60 * S + 400 * S)
    assert [n for _, _, n in attempts] == list(range(1, 402))
    assert {int((b - a).total_seconds()) for a, b in itertools.pairwise(t for t, _, _ in attempts)} == {1}
    assert "internal error" not in caplog.text


async def test_retry_attempt_survives_a_worker_restart(clock: FakeClock) -> None:
    from pyncette.memory import MemoryRepository

    shared = MemoryRepository()
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(**_: object):  # type: ignore[no-untyped-def]
        yield shared

    seen: list[int] = []
    for until in (START + 61 * S, START + 63 * S):
        app = make_app(backend=None, repository_factory=factory)

        @app.task(name="job", interval=60 * S, failure_mode=FailureMode.UNLOCK, max_attempts=5, retry_delay=S, retry_backoff=1)
        async def job(context: Context) -> None:
            seen.append(context.attempt)
            raise RuntimeError("fails")

        async with app.create(clock=clock) as ctx:
            await run_until(ctx, until)
    assert seen == [1, 2, 3, 4]


async def test_a_failing_task_does_not_stop_the_loop(clock: FakeClock) -> None:
    app = make_app()
    good = []

    @app.task(interval=S)
    async def bad(context: Context) -> None:
        raise ValueError("broken")

    @app.task(interval=S)
    async def ok(context: Context) -> None:
        good.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 5 * S)
    assert len(good) == 5


async def test_manual_heartbeat_extends_the_lease(clock: FakeClock) -> None:
    app = make_app()
    leases = []

    @app.task(interval=60 * S, lease_duration=10 * S)
    async def job(context: Context) -> None:
        clock.advance(8 * S)
        await context.heartbeat()
        assert context.lease is not None
        leases.append(context.lease.locked_until)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 60 * S)
    assert leases == [START + 78 * S]


async def test_heartbeat_after_lease_taken_over_raises_lease_lost(clock: FakeClock) -> None:
    app = make_app()
    outcomes = []

    @app.task(interval=60 * S, lease_duration=10 * S)
    async def job(context: Context) -> None:
        clock.advance(11 * S)
        await context.app_context.repository.claim_due(clock.now(), "job", owner="thief", lease_duration=10 * S, limit=1)
        try:
            await context.heartbeat()
        except LeaseLostException:
            outcomes.append("lost")

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 60 * S)
        state = await ctx.repository.get_task(TaskKey("job"))
    assert outcomes == ["lost"]
    assert state is not None and state.locked_by == "thief", "the stale worker must not commit"


async def test_automatic_heartbeat_with_heartbeat_decorator(clock: FakeClock) -> None:
    app = make_app()
    leases: list[datetime.datetime] = []
    started = anyio.Event()
    release = anyio.Event()

    @app.task(interval=60 * S, lease_duration=10 * S)
    @with_heartbeat(lease_remaining_ratio=0.5)
    async def job(context: Context) -> None:
        started.set()
        await release.wait()
        assert context.lease is not None
        leases.append(context.lease.locked_until)

    assert job.heartbeat_interval == 5 * S
    async with app.create(clock=clock) as ctx:
        clock.set(START + 60 * S)
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.tick)
            await started.wait()
            for _ in range(3):
                await anyio.wait_all_tasks_blocked()
                clock.advance(5 * S)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert leases == [START + 85 * S]


async def test_cancel_on_lease_lost(clock: FakeClock) -> None:
    app = make_app()
    finished = []
    started = anyio.Event()

    @app.task(interval=60 * S, lease_duration=10 * S)
    @with_heartbeat(cancel_on_lease_lost=True)
    async def job(context: Context) -> None:
        started.set()
        await anyio.sleep_forever()
        finished.append(1)

    async with app.create(clock=clock) as ctx:
        clock.set(START + 60 * S)
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.tick)
            await started.wait()
            await ctx.repository.unregister_task(clock.now(), TaskKey("job"))
            await anyio.wait_all_tasks_blocked()
            clock.advance(5 * S)
    assert finished == []


async def test_middlewares_wrap_in_registration_order(clock: FakeClock) -> None:
    app = make_app()
    order: list[str] = []

    @app.middleware
    async def outer(context: Context, next: Callable[[], Awaitable[None]]) -> None:
        order.append("outer-in")
        await next()
        order.append("outer-out")

    @app.middleware
    async def inner(context: Context, next: Callable[[], Awaitable[None]]) -> None:
        order.append("inner-in")
        await next()
        order.append("inner-out")

    @app.task(interval=S)
    async def job(context: Context) -> None:
        order.append("task")

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + S)
    assert order == ["outer-in", "inner-in", "task", "inner-out", "outer-out"]


async def test_fixtures_set_up_before_and_torn_down_after_running_tasks_in_reverse(clock: FakeClock) -> None:
    app = make_app()
    events: list[str] = []

    @app.fixture()
    async def first() -> Any:
        events.append("first-up")
        yield "one"
        events.append("first-down")

    @app.fixture(name="second")
    async def make_second(app_context: Any) -> Any:
        events.append("second-up")
        yield "two"
        events.append("second-down")

    @app.task(interval=S)
    async def job(context: Context) -> None:
        events.append(f"task {context.first} {context.second}")
        await anyio.sleep(0.01)
        events.append("task-end")

    async with app.create(clock=clock) as ctx:
        clock.advance(S)
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.run)
            await anyio.wait_all_tasks_blocked()
            ctx.shutdown()
    assert events == ["first-up", "second-up", "task one two", "task-end", "second-down", "first-down"]


async def test_concurrency_limit_is_back_pressure_on_claims(clock: FakeClock) -> None:
    app = make_app(concurrency_limit=3, batch_size=100)
    running = 0
    peak = 0
    gate = anyio.Event()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_tasks([(job, f"i{i}", {"execute_at": START}) for i in range(10)])
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.run)
            await anyio.wait_all_tasks_blocked()
            locked = [s for s in (await ctx.repository.list_tasks("job", limit=20)).states if s.locked_by]
            assert len(locked) == 3, "only as many claims as free capacity"
            gate.set()
            while (await ctx.repository.list_tasks("job", limit=20)).states:
                await anyio.sleep(0.01)
            ctx.shutdown()
    assert peak == 3


async def test_shutdown_cancels_after_grace_and_releases_the_lease(clock: FakeClock) -> None:
    app = make_app(shutdown_grace=0.05)
    started = anyio.Event()

    @app.dynamic_task(lease_duration=600 * S)
    async def job(context: Context) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "x", execute_at=START)
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.run)
            await started.wait()
            ctx.shutdown()
        state = await ctx.repository.get_task(TaskKey("job", "x"))
    assert state is not None and state.locked_by is None and state.next_run == START


async def test_fencing_token_grows_on_every_run(clock: FakeClock) -> None:
    app = make_app()
    tokens: list[int] = []

    @app.task(interval=S)
    async def job(context: Context) -> None:
        assert context.fencing_token is not None
        tokens.append(context.fencing_token)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 5 * S)
    assert len(tokens) == 5 and tokens == sorted(set(tokens))


async def test_forced_update_while_running_makes_the_commit_lose_the_lease(clock: FakeClock) -> None:
    app = make_app()
    outcomes: list[str] = []

    class Recorder:
        from pyncette.hookspecs import hookimpl

        @hookimpl
        def pyncette_on_execution_finished(self, context: Context, outcome: str, duration: datetime.timedelta) -> None:
            outcomes.append(outcome)

    app.plugin_manager.register(Recorder())

    @app.dynamic_task()
    async def job(context: Context) -> None:
        await context.app_context.schedule_task(job, "x", interval=99 * S, force=True)

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "x", execute_at=START)
        await ctx.tick()
        found = await ctx.get_task(job, "x")
    assert outcomes == ["lease_lost"]
    assert found is not None and found.interval == 99 * S and found.status is not None
    assert found.status.next_run == START + 99 * S


@pytest.mark.parametrize(
    ("policy", "expected_slots", "missed", "coalesced"),
    [
        ("all", [10, 20, 30, 40, 50], 0, 0),
        ("latest", [50], 0, 4),
        ("skip", [], 5, 0),
    ],
)
async def test_misfire_policies_after_an_outage(
    clock: FakeClock, policy: str, expected_slots: list[int], missed: int, coalesced: int
) -> None:
    app = make_app()
    slots: list[int] = []

    @app.task(interval=10 * S, catch_up=policy, misfire_grace=S)
    async def job(context: Context) -> None:
        slots.append(int((context.scheduled_at - START).total_seconds()))

    async with app.create(clock=clock) as ctx:
        clock.set(START + 55 * S)
        await ctx.tick()
        found = await ctx.get_task(job)
        assert found is not None and found.status is not None
        assert (found.status.missed, found.status.coalesced) == (missed, coalesced)
        assert found.status.next_run == START + 60 * S
    assert slots == expected_slots


async def test_pause_and_resume_with_catch_up(clock: FakeClock) -> None:
    app = make_app()
    slots: list[int] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        slots.append(int((context.scheduled_at - START).total_seconds()))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await ctx.pause_task(job, "a")
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None and found.status.paused
        await run_until(ctx, START + 45 * S)
        assert slots == []
        await ctx.resume_task(job, "a", catch_up="latest")
        await run_until(ctx, START + 50 * S)
    assert slots == [40, 50]


async def test_a_task_whose_lease_expired_before_it_started_is_not_run(clock: FakeClock) -> None:
    app = make_app()
    runs: list[int | None] = []

    @app.dynamic_task(lease_duration=5 * S)
    async def job(context: Context) -> None:
        runs.append(context.fencing_token)

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "x", execute_at=START)
        (claimed,) = (await ctx.repository.claim_due(START, "job", owner=app.worker_id, lease_duration=5 * S, limit=1)).claimed
        clock.advance(5 * S)
        execution = ctx._prepare(job, claimed)
        assert execution is not None
        await execution.run()
        assert runs == [], "a stale claim must not start the task"
        clock.advance(S)
        await ctx.tick()
    assert len(runs) == 1 and runs[0] is not None and runs[0] > claimed.lease.token


class CountingCompletions(RepositoryWrapper):
    """Records the size of every ``complete_tasks`` call."""

    calls: list[int]

    def __init__(self, inner: Repository) -> None:
        super().__init__(inner)
        self.calls = []

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        self.calls.append(len(completions))
        return await super().complete_tasks(now, completions)


class CountCompletions:
    def __init__(self) -> None:
        self.wrappers: list[CountingCompletions] = []

    @hookimpl
    def pyncette_repository_wrappers(self, app: Any) -> list[Callable[[Repository], Repository]]:
        def wrap(repository: Repository) -> Repository:
            self.wrappers.append(CountingCompletions(repository))
            return self.wrappers[-1]

        return [wrap]


async def test_executions_finishing_together_are_committed_in_one_call(clock: FakeClock) -> None:
    counter = CountCompletions()
    app = make_app(plugins=[counter])
    started = 0
    gate = anyio.Event()

    @app.dynamic_task(interval=60 * S)
    async def job(context: Context) -> None:
        nonlocal started
        started += 1
        await gate.wait()

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_tasks([(job, f"i{i}", {}) for i in range(25)])
        clock.advance(60 * S)
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.tick)
            await anyio.wait_all_tasks_blocked()
            assert started == 25
            gate.set()
        states = (await ctx.repository.list_tasks("job", limit=100)).states
    (wrapper,) = counter.wrappers
    assert wrapper.calls == [25], "25 executions released at once make one complete_tasks call"
    assert len(states) == 25 and all(s.next_run == START + 120 * S and s.locked_by is None for s in states)


class MisfireRecorder:
    """Records every ``pyncette_on_misfire`` report as ``(instance, missed, coalesced)``."""

    from pyncette.hookspecs import hookimpl

    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int]] = []

    @hookimpl
    def pyncette_on_misfire(self, task: Any, instance: str, missed: int, coalesced: int) -> None:
        self.reports.append((instance, missed, coalesced))


@pytest.mark.parametrize(
    ("policy", "expected_slots", "missed", "coalesced", "next_run"),
    [
        ("all", [10, 20, 30, 40, 50], 0, 0, 10),
        ("latest", [40, 50], 0, 3, 40),
        ("skip", [50], 4, 0, 50),
    ],
)
async def test_resume_counts_the_slots_it_drops_or_coalesces(
    clock: FakeClock, policy: str, expected_slots: list[int], missed: int, coalesced: int, next_run: int
) -> None:
    app = make_app()
    recorder = MisfireRecorder()
    app.plugin_manager.register(recorder)
    slots: list[int] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        slots.append(int((context.scheduled_at - START).total_seconds()))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await ctx.pause_task(job, "a")
        await run_until(ctx, START + 45 * S)
        await ctx.resume_task(job, "a", catch_up=policy)
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None and not found.status.paused
        assert (found.status.missed, found.status.coalesced) == (missed, coalesced)
        assert found.status.next_run == START + next_run * S
        await run_until(ctx, START + 50 * S)
    assert slots == expected_slots
    assert recorder.reports == ([("a", missed, coalesced)] if missed or coalesced else [])


async def test_resume_skip_drops_the_last_slot_of_a_once_off_instance(clock: FakeClock) -> None:
    app = make_app()
    recorder = MisfireRecorder()
    app.plugin_manager.register(recorder)

    @app.dynamic_task()
    async def job(context: Context) -> None:
        raise AssertionError("a dropped slot must not run")

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "once", execute_at=START + 10 * S)
        await ctx.pause_task(job, "once")
        clock.set(START + 20 * S)
        await ctx.resume_task(job, "once", catch_up="skip")
        assert await ctx.get_task(job, "once") is None
        await run_until(ctx, START + 30 * S)
    assert recorder.reports == [("once", 1, 0)]


@pytest.mark.parametrize(
    ("policy", "expected_runs", "missed", "coalesced"),
    [
        # the pending retry of slot 10 (attempt 2) is kept, then the missed slots follow
        (None, [(10, 1), (10, 2), (20, 1), (30, 1), (40, 1), (50, 1)], 0, 0),
        ("all", [(10, 1), (10, 2), (20, 1), (30, 1), (40, 1), (50, 1)], 0, 0),
        # the retry is folded with slots 20 and 30 into slot 40
        ("latest", [(10, 1), (40, 1), (50, 1)], 0, 3),
        # the retry and slots 20-40 are dropped
        ("skip", [(10, 1), (50, 1)], 4, 0),
    ],
)
async def test_resume_resolves_a_pending_retry_by_its_catch_up(
    clock: FakeClock, policy: str | None, expected_runs: list[tuple[int, int]], missed: int, coalesced: int
) -> None:
    app = make_app()
    runs: list[tuple[int, int]] = []

    @app.dynamic_task(failure_mode=FailureMode.UNLOCK, max_attempts=5, retry_delay=2 * S)
    async def job(context: Context) -> None:
        runs.append((int((context.scheduled_at - START).total_seconds()), context.attempt))
        if len(runs) == 1:
            raise RuntimeError("the first attempt fails")

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await run_until(ctx, START + 11 * S)
        pending = await ctx.get_task(job, "a")
        assert pending is not None and pending.status is not None
        assert (pending.status.attempt, pending.status.next_run) == (1, START + 12 * S)
        await ctx.pause_task(job, "a")
        await run_until(ctx, START + 45 * S)
        await ctx.resume_task(job, "a", catch_up=policy)
        await run_until(ctx, START + 50 * S)
        found = await ctx.get_task(job, "a")
    assert runs == expected_runs
    assert found is not None and found.status is not None
    assert (found.status.missed, found.status.coalesced, found.status.attempt) == (missed, coalesced, 0)


async def test_resume_of_a_running_instance_leaves_the_next_slot_to_the_run(clock: FakeClock) -> None:
    app = make_app()
    release = anyio.Event()
    slots: list[int] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        slots.append(int((context.scheduled_at - START).total_seconds()))
        if len(slots) == 1:
            await context.app_context.pause_task(job, "a")
            clock.set(START + 45 * S)
            await context.app_context.resume_task(job, "a", catch_up="skip")
            release.set()

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await run_until(ctx, START + 10 * S)
        assert release.is_set()
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None
        assert (found.status.paused, found.status.missed, found.status.next_run) == (False, 0, START + 50 * S)
    # the run committed slot 20 as its next; the default policy (all) then ran the slots due by 45 s
    assert slots == [10, 20, 30, 40]


@pytest.mark.parametrize(("policy", "expected_slots"), [("all", [10, 20, 30, 40, 50]), ("skip", [50])])
async def test_an_instance_follows_its_own_catch_up(clock: FakeClock, policy: str, expected_slots: list[int]) -> None:
    app = make_app()
    slots: list[int] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        slots.append(int((context.scheduled_at - START).total_seconds()))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S, catch_up=policy)
        clock.set(START + 45 * S)
        await run_until(ctx, START + 50 * S)
    assert slots == expected_slots


async def test_an_instance_follows_its_own_retry_policy(clock: FakeClock) -> None:
    app = make_app()
    runs: list[tuple[int, int, int]] = []

    @app.dynamic_task(failure_mode=FailureMode.UNLOCK)
    async def job(context: Context) -> None:
        now = context.app_context.clock.now()
        runs.append((int((context.scheduled_at - START).total_seconds()), context.attempt, int((now - START).total_seconds())))
        if context.scheduled_at == START + 10 * S:
            raise RuntimeError("boom")

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S, max_attempts=2, retry_delay=3 * S)
        await run_until(ctx, START + 20 * S)
        found = await ctx.get_task(job, "a")
    assert runs == [(10, 1, 10), (10, 2, 13), (20, 1, 20)]
    assert found is not None and found.status is not None and found.status.given_up == 1
