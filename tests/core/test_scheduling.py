"""The scheduler end to end on the memory backend, driven by the controllable clock."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import pytest

from pyncette import Context, ExecutionMode, TaskLockedException
from pyncette.errors import TaskDefinitionError, describe_error
from pyncette.model import TaskKey
from pyncette.testing import FakeClock, run_until
from tests.core.conftest import START, make_app

pytestmark = pytest.mark.anyio

S = datetime.timedelta(seconds=1)


async def test_static_interval_task_runs_every_slot(clock: FakeClock) -> None:
    app = make_app()
    slots: list[datetime.datetime] = []

    @app.task(interval=10 * S)
    async def job(context: Context) -> None:
        slots.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        assert await run_until(ctx, START + 60 * S) == 6
    assert slots == [START + i * 10 * S for i in range(1, 7)]


async def test_cron_in_a_time_zone(clock: FakeClock) -> None:
    app = make_app(poll_interval=datetime.timedelta(hours=1))
    slots: list[datetime.datetime] = []

    @app.task(schedule="0 9 * * *", timezone="Europe/Dublin")
    async def nine_am(context: Context) -> None:
        slots.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + datetime.timedelta(days=2))
    assert [s.isoformat() for s in slots] == ["2030-01-01T09:00:00+00:00", "2030-01-02T09:00:00+00:00"]
    assert slots[0].tzinfo is not None and str(slots[0].tzinfo) == "Europe/Dublin"


async def test_every_ten_seconds_cron_of_the_quick_start(clock: FakeClock) -> None:
    app = make_app()
    count = 0

    @app.task(schedule="* * * * * */10")
    async def foo(context: Context) -> None:
        nonlocal count
        count += 1

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 60 * S)
    assert count == 6


HOUR = datetime.timedelta(hours=1)


@contextlib.asynccontextmanager
async def running_loop(ctx: Any) -> AsyncIterator[Callable[[datetime.datetime], Awaitable[None]]]:
    """Run the real poll loop (``ctx.run()``) on the FakeClock; yield ``step_to(moment)``.

    ``step_to`` moves the clock forward one second at a time, letting the loop do everything it
    wants at each second before the next: the loop sleeps on the clock, so it runs a task at the
    second it chose to wake, and only then.
    """
    clock = ctx.clock

    async def step_to(moment: datetime.datetime) -> None:
        while clock.now() < moment:
            await anyio.wait_all_tasks_blocked()
            clock.advance(S)
        await anyio.wait_all_tasks_blocked()

    async with anyio.create_task_group() as group:
        group.start_soon(ctx.run)
        await anyio.wait_all_tasks_blocked()
        yield step_to
        ctx.shutdown()


async def test_the_loop_wakes_at_each_slot_not_at_the_poll_interval(clock: FakeClock) -> None:
    """Precise wake-up: with a poll interval of an hour, each task still starts exactly at its slot."""
    app = make_app(poll_interval=HOUR)
    started: list[tuple[str, datetime.datetime, datetime.datetime]] = []

    @app.task(interval=7 * S)
    async def every_seven(context: Context) -> None:
        started.append(("every_seven", context.scheduled_at, clock.now()))

    @app.task(schedule="* * * * * 10,45")
    async def cron_seconds(context: Context) -> None:
        started.append(("cron_seconds", context.scheduled_at, clock.now()))

    async with app.create(clock=clock) as ctx, running_loop(ctx) as step_to:
        await step_to(START + 50 * S)
    assert all(scheduled == now for _, scheduled, now in started), started
    assert sorted((name, scheduled) for name, scheduled, _ in started) == sorted(
        [("every_seven", START + n * 7 * S) for n in range(1, 8)]
        + [("cron_seconds", START + 10 * S), ("cron_seconds", START + 45 * S)]
    )


async def test_an_instance_due_sooner_wakes_the_sleeping_loop_at_its_time(clock: FakeClock) -> None:
    """A dynamic instance scheduled while the loop sleeps towards a later slot moves the wake-up to its own time."""
    app = make_app(poll_interval=HOUR)
    started: list[tuple[str, datetime.datetime, datetime.datetime]] = []

    @app.task(interval=30 * S)
    async def slow(context: Context) -> None:
        started.append(("slow", context.scheduled_at, clock.now()))

    @app.dynamic_task()
    async def reminder(context: Context) -> None:
        started.append((context.task.name, context.scheduled_at, clock.now()))

    async with app.create(clock=clock) as ctx, running_loop(ctx) as step_to:
        await step_to(START + 5 * S)
        assert ctx.next_wakeup() == START + 30 * S
        await ctx.schedule_task(reminder, "soon", execute_at=START + 12 * S)
        assert ctx.next_wakeup() == START + 12 * S
        await step_to(START + 20 * S)
        assert started == [("soon", START + 12 * S, START + 12 * S)]
        await ctx.schedule_task(reminder, "every-9s", interval=9 * S)
        assert ctx.next_wakeup() == START + 29 * S
        await step_to(START + 40 * S)
    assert started == [
        ("soon", START + 12 * S, START + 12 * S),
        ("every-9s", START + 29 * S, START + 29 * S),
        ("slow", START + 30 * S, START + 30 * S),
        ("every-9s", START + 38 * S, START + 38 * S),
    ]


async def test_disabled_task_never_runs(clock: FakeClock) -> None:
    app = make_app()
    runs = []

    @app.task(interval=S, enabled=False)
    async def job(context: Context) -> None:
        runs.append(1)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 10 * S)
        assert await ctx.get_task(job) is None
    assert runs == []


async def test_dynamic_instances_run_with_their_arguments(clock: FakeClock) -> None:
    app = make_app()
    runs: list[tuple[str, object, datetime.datetime]] = []

    @app.dynamic_task()
    async def remind(context: Context) -> None:
        runs.append((context.task.name, context.args["user"], context.scheduled_at))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(remind, "alice", interval=30 * S, user="alice@example.com")
        await ctx.schedule_task(remind, "bob", schedule="* * * * *", user="bob@example.com")
        await run_until(ctx, START + 60 * S)
    assert sorted(runs) == [
        ("alice", "alice@example.com", START + 30 * S),
        ("alice", "alice@example.com", START + 60 * S),
        ("bob", "bob@example.com", START + 60 * S),
    ]


async def test_once_off_instance_runs_once_and_is_removed(clock: FakeClock) -> None:
    app = make_app()
    runs = []

    @app.dynamic_task()
    async def once(context: Context) -> None:
        runs.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(once, "x", execute_at=START + 5 * S)
        await ctx.schedule_task(once, "past", execute_at=START - 5 * S)
        await run_until(ctx, START + 60 * S)
        assert await ctx.get_task(once, "x") is None
        assert await ctx.get_task(once, "past") is None
    assert sorted(runs) == [START - 5 * S, START + 5 * S]


async def test_schedule_task_update_semantics(clock: FakeClock) -> None:
    app = make_app()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=60 * S)
        clock.advance(30 * S)
        await ctx.schedule_task(job, "a", interval=60 * S)
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None
        assert found.status.next_run == START + 60 * S, "same definition keeps the pending run"
        await ctx.schedule_task(job, "a", interval=10 * S, extra=1)
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None
        assert found.status.next_run == START + 40 * S, "a changed definition re-plans"
        assert found.extra_args == {"extra": 1} and found.interval == 10 * S


async def test_schedule_task_on_locked_instance_needs_force(clock: FakeClock) -> None:
    app = make_app()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        clock.advance(10 * S)
        claimed = await ctx.repository.claim_due(clock.now(), "job", owner="other", lease_duration=60 * S, limit=5)
        assert len(claimed.claimed) == 1
        with pytest.raises(TaskLockedException):
            await ctx.schedule_task(job, "a", interval=20 * S)
        await ctx.schedule_task(job, "a", interval=20 * S, force=True)
        state = await ctx.repository.get_task(TaskKey("job", "a"))
        assert state is not None and state.locked_by is None
        assert state.fencing_token > claimed.claimed[0].lease.token


async def test_schedule_task_rejects_static_task_and_unknown_names(clock: FakeClock) -> None:
    app = make_app()

    @app.task(interval=S)
    async def static(context: Context) -> None:
        pass

    @app.dynamic_task()
    async def dynamic(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        with pytest.raises(TaskDefinitionError, match="static"):
            await ctx.schedule_task(static, "x", interval=S)
        with pytest.raises(TaskDefinitionError, match="nope"):
            await ctx.schedule_task("nope", "x", interval=S)
        with pytest.raises(TaskDefinitionError, match=r"dynamic/x.*interval"):
            await ctx.schedule_task("dynamic", "x", interval=-1)


@pytest.mark.parametrize("operation", ["get_task", "unschedule_task", "pause_task", "resume_task"])
@pytest.mark.parametrize("by_name", [False, True], ids=["template", "name"])
@pytest.mark.parametrize("instance_name", [None, ""], ids=["no-name", "empty-name"])
async def test_a_dynamic_task_used_as_a_static_one_needs_an_instance_name(
    clock: FakeClock, operation: str, by_name: bool, instance_name: str | None
) -> None:
    app = make_app()

    @app.dynamic_task(interval=S)
    async def dyn(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(dyn, "i1")
        method = getattr(ctx, operation)
        with pytest.raises(TaskDefinitionError) as caught:
            await method("dyn" if by_name else dyn, instance_name)
        assert str(caught.value) == f"task 'dyn': an instance name is needed for a dynamic task (got {instance_name!r})"
        found = await ctx.get_task(dyn, "i1")
        assert found is not None and found.status is not None and not found.status.paused, "the instance is untouched"


@pytest.mark.parametrize("operation", ["get_task", "unschedule_task", "pause_task", "resume_task"])
async def test_a_static_task_given_an_instance_name_is_refused(clock: FakeClock, operation: str) -> None:
    app = make_app()

    @app.task(interval=S)
    async def static(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        with pytest.raises(TaskDefinitionError) as caught:
            await getattr(ctx, operation)(static, "x")
        assert str(caught.value) == "task 'static': a static task has no instances (got instance name 'x')"
        found = await ctx.get_task(static)
        assert found is not None and found.status is not None and not found.status.paused, "the task is untouched"


async def test_schedule_tasks_refuses_a_template_or_a_static_task_in_place_of_an_instance(clock: FakeClock) -> None:
    app = make_app()

    @app.dynamic_task(interval=S)
    async def dyn(context: Context) -> None:
        pass

    @app.task(interval=S)
    async def static(context: Context) -> None:
        pass

    hint = "give (template, instance_name, keywords) or template.instantiate(instance_name, ...)"
    async with app.create(clock=clock) as ctx:
        with pytest.raises(TaskDefinitionError) as caught:
            await ctx.schedule_tasks([dyn])
        assert str(caught.value) == (
            f"task 'dyn': schedule_tasks needs instances of dynamic tasks, got a dynamic task template, not an instance; {hint}"
        )
        with pytest.raises(TaskDefinitionError) as caught:
            await ctx.schedule_tasks([static])
        assert str(caught.value) == f"task 'static': schedule_tasks needs instances of dynamic tasks, got a static task; {hint}"
        with pytest.raises(TaskDefinitionError, match=r"task 'dyn': instance names must be 1-\d+ characters, got None"):
            await ctx.schedule_task(dyn, None)  # type: ignore[arg-type]
        assert (await ctx.list_tasks(dyn)).tasks == []


async def test_unschedule_is_idempotent_and_stops_runs(clock: FakeClock) -> None:
    app = make_app()
    runs = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        runs.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        instance = await ctx.schedule_task(job, "a", interval=10 * S)
        await run_until(ctx, START + 10 * S)
        await ctx.unschedule_task(instance)
        await ctx.unschedule_task(job, "a")
        await run_until(ctx, START + 60 * S)
    assert runs == [START + 10 * S]


async def test_bulk_schedule_tasks(clock: FakeClock) -> None:
    app = make_app()
    runs: list[str] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        runs.append(context.task.name)

    async with app.create(clock=clock) as ctx:
        created = await ctx.schedule_tasks([(job, f"i{i:03d}", {"interval": 10 * S, "n": i}) for i in range(250)])
        assert len(created) == 250
        more = await ctx.schedule_tasks([job.instantiate("extra", execute_at=START)])
        assert more[0].name == "extra"
        await run_until(ctx, START + 10 * S)
    assert sorted(runs) == sorted([f"i{i:03d}" for i in range(250)] + ["extra"])


async def test_bulk_schedule_reports_locked_instances_after_registering_the_rest(clock: FakeClock) -> None:
    app = make_app()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "locked", execute_at=START)
        await ctx.repository.claim_due(START, "job", owner="other", lease_duration=60 * S, limit=5)
        with pytest.raises(TaskLockedException, match="locked"):
            await ctx.schedule_tasks([(job, "locked", {"interval": S}), (job, "free", {"interval": S})])
        assert await ctx.get_task(job, "free") is not None


async def test_list_tasks_pages_through_every_instance(clock: FakeClock) -> None:
    app = make_app()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        names = [f"n{i:02d}" for i in range(23)]
        await ctx.schedule_tasks([(job, n, {"interval": S}) for n in names])
        seen: list[str] = []
        token = None
        while True:
            page = await ctx.list_tasks(job, limit=5, continuation_token=token)
            assert len(page.tasks) <= 5
            seen.extend(t.name for t in page.tasks)
            token = page.continuation_token
            if token is None:
                break
        assert seen == names


async def test_list_tasks_covers_every_partition(clock: FakeClock) -> None:
    app = make_app()

    @app.partitioned_task(partition_count=5, enabled_partitions=[0])
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        names = {f"user-{i}" for i in range(40)}
        await ctx.schedule_tasks([(job, n, {"interval": S}) for n in names])
        assert len({job.key_for(n).task for n in names}) == 5
        seen: list[str] = []
        token = None
        while True:
            page = await ctx.list_tasks(job, limit=7, continuation_token=token)
            seen.extend(t.name for t in page.tasks)
            token = page.continuation_token
            if token is None:
                break
        assert sorted(seen) == sorted(names)


async def test_partitioned_worker_runs_only_enabled_partitions(clock: FakeClock) -> None:
    runs: dict[int, set[str]] = {0: set(), 1: set()}
    apps = []
    for partition in (0, 1):
        app = make_app()

        @app.partitioned_task(name="job", partition_count=2, enabled_partitions=[partition])
        async def job(context: Context, partition: int = partition) -> None:
            runs[partition].add(context.task.name)

        apps.append((app, job))
    app0, job0 = apps[0]
    app1, _ = apps[1]
    async with app0.create(clock=clock) as ctx0:
        names = [f"u{i}" for i in range(20)]
        await ctx0.schedule_tasks([(job0, n, {"execute_at": START}) for n in names])
        ctx1 = ctx0.__class__(app1, ctx0.repository, clock, {})
        await ctx0.tick()
        await ctx1.tick()
    assert runs[0] | runs[1] == set(names)
    assert not runs[0] & runs[1]
    assert all(job0.key_for(n).task == "job:0" for n in runs[0])


async def test_get_task_of_static_task_reports_status(clock: FakeClock) -> None:
    app = make_app()

    @app.task(interval=10 * S)
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        found = await ctx.get_task(job)
        assert found is not None and found.status is not None
        assert found.status.next_run == START + 10 * S and not found.status.paused


async def test_static_task_schedule_change_replans_but_restart_keeps_pending_run(clock: FakeClock) -> None:
    from pyncette.memory import MemoryRepository

    shared = MemoryRepository()
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(**_: object):  # type: ignore[no-untyped-def]
        yield shared

    for interval, expected in ((60, START + 60 * S), (60, START + 60 * S), (20, START + 30 * S)):
        app = make_app(backend=None, repository_factory=factory)

        @app.task(name="job", interval=interval)
        async def job(context: Context) -> None:
            pass

        async with app.create(clock=clock) as ctx:
            found = await ctx.get_task(job)
            assert found is not None and found.status is not None
            assert found.status.next_run == expected
        clock.set(START + 10 * S)


async def test_last_tick_and_add_to_context(clock: FakeClock) -> None:
    app = make_app()
    seen = []

    @app.task(interval=S)
    async def job(context: Context) -> None:
        seen.append((context.greeting, context.other))

    async with app.create(clock=clock, context_items={"greeting": "hi"}) as ctx:
        ctx.add_to_context("other", 1)
        assert ctx.last_tick is None
        await run_until(ctx, START + S)
        assert ctx.last_tick == START + S
        ctx.add_to_context("other", 2)
        await run_until(ctx, START + 2 * S)
    assert seen == [("hi", 1), ("hi", 2)], "a value added to the context is what the next run sees"


async def test_next_runs_previews_in_the_task_zone(clock: FakeClock) -> None:
    app = make_app()

    @app.task(schedule="30 2 * * *", timezone="America/New_York")
    async def nightly(context: Context) -> None:
        pass

    @app.dynamic_task()
    async def dyn(context: Context) -> None:
        pass

    spring = datetime.datetime(2030, 3, 9, 12, tzinfo=datetime.timezone.utc)
    runs = nightly.next_runs(3, after=spring)
    assert [r.isoformat() for r in runs] == [
        "2030-03-10T03:00:00-04:00",
        "2030-03-11T02:30:00-04:00",
        "2030-03-12T02:30:00-04:00",
    ]
    with pytest.raises(TaskDefinitionError, match="preview an instance"):
        dyn.next_runs(1)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(dyn, "x", interval=7 * S)
        clock.advance(3 * S)
        found = await ctx.get_task(dyn, "x")
        assert found is not None
        assert found.next_runs(2, after=clock.now()) == [START + 7 * S, START + 14 * S]


class _Unreachable:
    """A repository whose claims fail while ``down`` is set, as when the store is unreachable."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("store down")
        return await self.inner.claim_due(*args, **kwargs)


async def test_failed_polls_back_off_jittered_up_to_poll_backoff_max(clock: FakeClock) -> None:
    app = make_app(poll_interval=S, poll_backoff_max=5 * S)
    runs: list[datetime.datetime] = []

    @app.task(interval=S)
    async def job(context: Context) -> None:
        runs.append(context.scheduled_at)

    async with app.create(clock=clock) as ctx:
        store = _Unreachable(ctx.repository)
        ctx.repository = store  # type: ignore[assignment]
        store.down = True
        pauses = []
        for failures in range(1, 9):
            await ctx.tick()
            pauses.append(ctx._next_check[job.name] - clock.now())
            step = min(S * 2**failures, 5 * S)
            assert step / 2 <= pauses[-1] <= step, (failures, pauses)
            clock.advance(pauses[-1])
        assert len(set(pauses[-4:])) > 1, "the capped pauses are jittered"
        assert not runs
        store.down = False
        assert await ctx.tick() > 0, "the first poll after the outage runs what came due"
        assert ctx._next_check[job.name] - clock.now() <= S, "the back-off is forgotten once a poll succeeds"


class _Silent(_Unreachable):
    """A repository whose claims never answer while ``down`` is set, as behind a silent network."""

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            await anyio.sleep_forever()
        return await self.inner.claim_due(*args, **kwargs)


async def test_a_claim_without_reply_fails_after_store_timeout_and_says_so(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(poll_interval=S, store_timeout=0.05)

    @app.task(interval=S)
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        store = _Silent(ctx.repository)
        ctx.repository = store  # type: ignore[assignment]
        store.down = True
        with anyio.fail_after(5):
            assert await ctx.tick() == 0
        assert ctx._next_check[job.name] > clock.now(), "the failed poll backs off"
        store.down = False
        clock.advance(ctx._next_check[job.name] - clock.now())
        assert await ctx.tick() == 1
    (warning,) = [r for r in caplog.records if r.getMessage().startswith("polling job failed")]
    assert "no reply within the store timeout (TimeoutError)" in warning.getMessage()


def test_error_descriptions_are_never_empty() -> None:
    assert describe_error(TimeoutError()) == "no reply within the store timeout (TimeoutError)"
    assert describe_error(ConnectionResetError()) == "ConnectionResetError"
    assert describe_error(ConnectionError("store down")) == "store down"


async def test_start_up_fails_fast_when_the_store_cannot_register_the_static_tasks(clock: FakeClock) -> None:
    from pyncette.errors import BackendError
    from pyncette.memory import MemoryRepository

    class Refusing(MemoryRepository):
        async def register_tasks(self, now: datetime.datetime, registrations: Any) -> Any:
            raise BackendError("store down")

    @contextlib.asynccontextmanager
    async def factory(**_: Any) -> AsyncIterator[MemoryRepository]:
        yield Refusing()

    app = make_app(backend=None, repository_factory=factory)

    @app.task(interval=S)
    async def job(context: Context) -> None:
        pass

    with pytest.raises(BackendError, match="store down"):
        async with app.create(clock=clock):
            pass


async def test_instances_may_have_arguments_named_like_the_parameters_of_schedule_task(clock: FakeClock) -> None:
    app = make_app()
    seen: list[dict[str, Any]] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        seen.append(dict(context.args))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "one", interval=S, task="t", instance_name="n", name="x")
        await run_until(ctx, START + S)
    assert seen == [{"task": "t", "instance_name": "n", "name": "x"}]


async def test_task_wide_options_given_to_schedule_task_are_refused_not_stored_as_arguments(clock: FakeClock) -> None:
    app = make_app()
    seen: list[dict[str, Any]] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        seen.append(dict(context.args))

    async with app.create(clock=clock) as ctx:
        with pytest.raises(
            TaskDefinitionError, match=r"task 'job/a': 'execution_mode', 'failure_mode' cannot be given to an instance"
        ):
            await ctx.schedule_task(job, "a", interval=S, execution_mode=ExecutionMode.AT_MOST_ONCE, failure_mode="unlock")
        assert await ctx.get_task(job, "a") is None, "nothing is stored"
        # extra_args carries an argument of that name; the stored instance reads back the same.
        await ctx.schedule_task(job, "b", interval=S, extra_args={"execution_mode": "mine"}, user=1)
        await run_until(ctx, START + S)
        stored = await ctx.get_task(job, "b")
    assert seen == [{"execution_mode": "mine", "user": 1}]
    assert stored is not None and stored.extra_args == {"execution_mode": "mine", "user": 1}
    assert stored.execution_mode is ExecutionMode.AT_LEAST_ONCE


def _local(moments: list[datetime.datetime], zone: str) -> list[str]:
    from zoneinfo import ZoneInfo

    return [m.astimezone(ZoneInfo(zone)).isoformat() for m in moments]


@pytest.mark.parametrize(
    ("zone", "start", "until", "expected"),
    [
        pytest.param(
            "America/New_York",
            datetime.datetime(2026, 3, 7, 12, tzinfo=datetime.timezone.utc),
            datetime.datetime(2026, 3, 9, 12, tzinfo=datetime.timezone.utc),
            {
                # the missing 02:30 runs once, when the gap ends (TRANSITION, the default for fixed times)
                "30 2 * * *": ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
                # both missing times run once, together, when the gap ends
                "0,30 2 * * *": [
                    "2026-03-08T03:00:00-04:00",
                    "2026-03-09T02:00:00-04:00",
                    "2026-03-09T02:30:00-04:00",
                ],
                "30 1 * * *": ["2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"],
                # wildcard hours skip the missing hour (SKIP)
                "*/30 * * * *": [
                    "2026-03-08T01:00:00-05:00",
                    "2026-03-08T01:30:00-05:00",
                    "2026-03-08T03:00:00-04:00",
                    "2026-03-08T03:30:00-04:00",
                ],
            },
            id="new-york-spring-forward",
        ),
        pytest.param(
            "America/New_York",
            datetime.datetime(2026, 10, 31, 12, tzinfo=datetime.timezone.utc),
            datetime.datetime(2026, 11, 2, 12, tzinfo=datetime.timezone.utc),
            {
                "30 2 * * *": ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"],
                # the repeated 01:30 runs once, on its first occurrence (FIRST)
                "30 1 * * *": ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
                # wildcard hours run at both occurrences (BOTH)
                "*/30 * * * *": [
                    "2026-11-01T01:00:00-04:00",
                    "2026-11-01T01:30:00-04:00",
                    "2026-11-01T01:00:00-05:00",
                    "2026-11-01T01:30:00-05:00",
                ],
            },
            id="new-york-fall-back",
        ),
        pytest.param(
            "Australia/Lord_Howe",
            datetime.datetime(2026, 10, 3, 0, tzinfo=datetime.timezone.utc),
            datetime.datetime(2026, 10, 5, 0, tzinfo=datetime.timezone.utc),
            {
                # 02:00 +10:30 becomes 02:30 +11:00: the missing 02:15 runs when the 30-minute gap ends
                "15 2 * * *": ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
                "30 2 * * *": ["2026-10-04T02:30:00+11:00", "2026-10-05T02:30:00+11:00"],
                "*/30 * * * *": [
                    "2026-10-04T01:30:00+10:30",
                    "2026-10-04T02:30:00+11:00",
                ],
            },
            id="lord-howe-30-minute-spring-forward",
        ),
        pytest.param(
            "Australia/Lord_Howe",
            datetime.datetime(2026, 4, 3, 0, tzinfo=datetime.timezone.utc),
            datetime.datetime(2026, 4, 5, 0, tzinfo=datetime.timezone.utc),
            {
                # 02:00 +11:00 becomes 01:30 +10:30: 01:45 happens twice and runs on the first
                "45 1 * * *": ["2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00"],
                "*/30 * * * *": [
                    "2026-04-05T01:00:00+11:00",
                    "2026-04-05T01:30:00+11:00",
                    "2026-04-05T01:30:00+10:30",
                    "2026-04-05T02:00:00+10:30",
                ],
            },
            id="lord-howe-30-minute-fall-back",
        ),
    ],
)
async def test_cron_tasks_run_across_dst_changes_by_the_documented_defaults(
    zone: str, start: datetime.datetime, until: datetime.datetime, expected: dict[str, list[str]]
) -> None:
    app = make_app(poll_interval=datetime.timedelta(hours=1))
    runs: dict[str, list[datetime.datetime]] = {expression: [] for expression in expected}
    for index, expression in enumerate(expected):

        async def job(context: Context, expression: str = expression) -> None:
            # in UTC: an aware datetime in a fold never compares equal across zones (PEP 495)
            assert context.app_context.clock.now() == context.scheduled_at.astimezone(datetime.timezone.utc)
            runs[expression].append(context.scheduled_at)

        app.task(name=f"job{index}", schedule=expression, timezone=zone)(job)
    clock = FakeClock(start)
    async with app.create(clock=clock) as ctx:
        await run_until(ctx, until)
    # the wildcard job runs every 30 minutes all along; compare the hours around the change
    for expression, moments in runs.items():
        if expression == "*/30 * * * *":
            first = datetime.datetime.fromisoformat(expected[expression][0]).astimezone(datetime.timezone.utc)
            last = datetime.datetime.fromisoformat(expected[expression][-1]).astimezone(datetime.timezone.utc)
            moments = [m for m in moments if first <= m.astimezone(datetime.timezone.utc) <= last]
        assert _local(moments, zone) == expected[expression], expression


async def test_two_apps_on_one_store_agree_on_a_jittered_instance(clock: FakeClock) -> None:
    from pyncette.memory import MemoryRepository
    from pyncette.schedule import jitter_offset

    shared = MemoryRepository()

    @contextlib.asynccontextmanager
    async def factory(**_: object) -> AsyncIterator[MemoryRepository]:
        yield shared

    jitter = datetime.timedelta(hours=1)
    seen: list[tuple[str, str, datetime.datetime]] = []

    def build(worker: str) -> Any:
        app = make_app(backend=None, repository_factory=factory, worker_id=worker, poll_interval=datetime.timedelta(hours=1))

        @app.dynamic_task(name="digest", schedule="0 0 * * *", jitter=jitter)
        async def digest(context: Context) -> None:
            seen.append((worker, context.task.name, context.scheduled_at))

        return app, digest

    (app1, digest1), (app2, digest2) = build("w1"), build("w2")
    names = [f"u{i}" for i in range(5)]
    midnight = START  # 00:00: each instance's first run is today's midnight slot plus its offset
    async with app1.create(clock=clock) as ctx1, app2.create(clock=clock) as ctx2:
        await ctx1.schedule_tasks([(digest1, name, {}) for name in names])
        for name in names:
            offset = jitter_offset(f"digest/{name}", jitter)
            one, two = await ctx1.get_task(digest1, name), await ctx2.get_task(digest2, name)
            assert one is not None and two is not None and one.status is not None and two.status is not None
            assert one.status.next_run == two.status.next_run == midnight + offset
            assert one.next_runs(2, after=clock.now()) == two.next_runs(2, after=clock.now())
        await run_until(ctx2, midnight + jitter)
    assert sorted((name, at) for _, name, at in seen) == sorted(
        (name, midnight + jitter_offset(f"digest/{name}", jitter)) for name in names
    )
    assert len({at for _, _, at in seen}) == len(names), "the instances are spread over the hour"
    assert {worker for worker, _, _ in seen} == {"w2"}
