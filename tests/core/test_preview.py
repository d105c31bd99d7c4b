"""Previews of stored instances (``task.planned_runs`` / ``task.next_runs``) against the runs that happen.

Each test reads an instance back with ``get_task``, previews it, then lets the scheduler run on the
controllable clock and checks that the runs (start time, ``scheduled_at``, ``attempt``) are the
preview's.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from pyncette import Context, Pyncette
from pyncette.model import DstGap, PlannedRun
from pyncette.schedule import CronSchedule
from pyncette.task import Task
from pyncette.testing import FakeClock, run_until
from tests.core.conftest import START, make_app

pytestmark = pytest.mark.anyio

S = datetime.timedelta(seconds=1)
UTC = datetime.timezone.utc

Run = tuple[datetime.datetime, datetime.datetime, int]


def _utc(runs: list[PlannedRun]) -> list[Run]:
    # compared in UTC: an aware datetime in a fold never compares equal across zones (PEP 495)
    return [(r.at.astimezone(UTC), r.scheduled_at.astimezone(UTC), r.attempt) for r in runs]


def _recording_app(**options: Any) -> tuple[Pyncette, Task, list[Run], set[datetime.datetime]]:
    """An app with one dynamic task ``job`` that records its runs and fails on the slots in ``failing``."""
    app = make_app(**options.pop("app", {}))
    runs: list[Run] = []
    failing: set[datetime.datetime] = set()

    @app.dynamic_task(**options)
    async def job(context: Context) -> None:
        scheduled = context.scheduled_at.astimezone(UTC)
        runs.append((context.app_context.clock.now(), scheduled, context.attempt))
        if scheduled in failing:
            failing.discard(scheduled)
            raise RuntimeError("planned failure")

    return app, job, runs, failing


async def _preview(ctx: Any, job: Task, name: str, n: int, **kwargs: Any) -> list[PlannedRun]:
    found = await ctx.get_task(job, name)
    assert found is not None and found.status is not None
    planned = found.planned_runs(n, after=ctx.clock.now(), **kwargs)
    assert found.next_runs(n, after=ctx.clock.now(), **kwargs) == [r.at for r in planned]
    return planned


@pytest.mark.parametrize(
    ("options", "retry_at"),
    [
        # retried after the back-off, before the next slot: the grid continues from the failed slot
        pytest.param({"failure_mode": "unlock", "retry_delay": 3 * S}, 13, id="unlock-back-off"),
        # retried when the failed attempt's lease would have expired, after the next slot (20 s),
        # which then runs at once
        pytest.param({"lease_duration": 15 * S}, 25, id="none-after-the-lease"),
    ],
)
async def test_a_pending_retry_comes_first_and_the_grid_continues_from_its_slot(
    clock: FakeClock, options: dict[str, Any], retry_at: int
) -> None:
    app, job, runs, failing = _recording_app(max_attempts=3, **options)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        failing.add(START + 10 * S)
        await run_until(ctx, START + 10 * S)
        found = await ctx.get_task(job, "a")
        assert found is not None and found.status is not None
        assert found.status.retry_slot == START + 10 * S and found.status.attempt == 1
        assert found.status.next_run == START + retry_at * S
        planned = await _preview(ctx, job, "a", 4)
        expected_first = [
            (START + retry_at * S, START + 10 * S, 2),
            (START + max(retry_at, 20) * S, START + 20 * S, 1),
            (START + 30 * S, START + 30 * S, 1),
        ]
        assert _utc(planned)[:3] == expected_first
        del runs[:]
        await run_until(ctx, planned[-1].at)
    assert runs == _utc(planned)


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        # every missed slot runs at once, one after another
        pytest.param("all", [(45, 10), (45, 20), (45, 30), (45, 40), (50, 50), (60, 60)], id="all"),
        # one run for the missed slots, at once, then the schedule continues
        pytest.param("latest", [(45, 40), (50, 50), (60, 60), (70, 70), (80, 80), (90, 90)], id="latest"),
        # the missed slots are dropped: the next run is the next future slot
        pytest.param("skip", [(50, 50), (60, 60), (70, 70), (80, 80), (90, 90), (100, 100)], id="skip"),
    ],
)
async def test_an_overdue_instance_previews_what_its_misfire_policy_runs(
    clock: FakeClock, catch_up: str, expected: list[tuple[int, int]]
) -> None:
    app, job, runs, _ = _recording_app(catch_up=catch_up)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        clock.set(START + 45 * S)  # no worker ran it for 45 s
        planned = await _preview(ctx, job, "a", 6)
        assert _utc(planned) == [(START + at * S, START + slot * S, 1) for at, slot in expected]
        await run_until(ctx, planned[-1].at)
    assert runs == _utc(planned)


@pytest.mark.parametrize(("catch_up", "runs_at_once"), [("all", True), ("latest", True), ("skip", False)])
async def test_an_overdue_once_off_instance_runs_at_once_unless_skipped(
    clock: FakeClock, catch_up: str, runs_at_once: bool
) -> None:
    app, job, runs, _ = _recording_app(catch_up=catch_up)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "once", execute_at=START + 10 * S)
        clock.set(START + 45 * S)
        planned = await _preview(ctx, job, "once", 3)
        assert _utc(planned) == ([(START + 45 * S, START + 10 * S, 1)] if runs_at_once else [])
        await run_until(ctx, START + 60 * S)
    assert runs == _utc(planned)


async def test_a_paused_instance_previews_nothing_unless_asked(clock: FakeClock) -> None:
    app, job, runs, _ = _recording_app()
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await ctx.pause_task(job, "a")
        await run_until(ctx, START + 25 * S)
        assert runs == []
        assert await _preview(ctx, job, "a", 4) == []
        # as if resumed now without catch_up: the task's own policy (all) runs the missed slots
        if_resumed = await _preview(ctx, job, "a", 4, include_paused=True)
        assert _utc(if_resumed) == [
            (START + 25 * S, START + 10 * S, 1),
            (START + 25 * S, START + 20 * S, 1),
            (START + 30 * S, START + 30 * S, 1),
            (START + 40 * S, START + 40 * S, 1),
        ]
        await ctx.resume_task(job, "a")
        await run_until(ctx, START + 40 * S)
    assert runs == _utc(if_resumed)


async def test_a_run_in_progress_is_not_previewed(clock: FakeClock) -> None:
    app = make_app()
    seen: list[list[Run]] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        found = await context.app_context.get_task(job, context.task.name)
        assert found is not None
        seen.append(_utc(found.planned_runs(2, after=context.app_context.clock.now())))

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=10 * S)
        await run_until(ctx, START + 10 * S)
    assert seen == [[(START + 20 * S, START + 20 * S, 1), (START + 30 * S, START + 30 * S, 1)]]


async def test_a_jittered_instance_previews_its_runs(clock: FakeClock) -> None:
    app, job, runs, _ = _recording_app(
        schedule="0 0 * * *", jitter=datetime.timedelta(hours=6), app={"poll_interval": datetime.timedelta(hours=1)}
    )
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "user-7")
        planned = await _preview(ctx, job, "user-7", 3)
        offsets = {(r.at - datetime.datetime.combine(r.at.date(), datetime.time(), UTC)) for r in planned}
        assert len(offsets) == 1 and datetime.timedelta(0) < offsets.pop() < datetime.timedelta(hours=6)
        await run_until(ctx, planned[-1].at)
    assert runs == _utc(planned)


@pytest.mark.parametrize(
    ("expression", "options", "start", "expected"),
    [
        # spring forward: 02:30 does not exist and runs when the gap ends (the default, as in Vixie cron)
        pytest.param(
            "30 2 * * *",
            {},
            datetime.datetime(2030, 3, 9, 12, tzinfo=UTC),
            ["2030-03-10T03:00:00-04:00", "2030-03-11T02:30:00-04:00"],
            id="spring-forward",
        ),
        # the same, stored explicitly as "transition"
        pytest.param(
            "30 2 * * *",
            {"dst_gap": "transition"},
            datetime.datetime(2030, 3, 9, 12, tzinfo=UTC),
            ["2030-03-10T03:00:00-04:00", "2030-03-11T02:30:00-04:00"],
            id="spring-forward-transition",
        ),
        # shifted by the length of the gap when asked for
        pytest.param(
            "30 2 * * *",
            {"dst_gap": "shift"},
            datetime.datetime(2030, 3, 9, 12, tzinfo=UTC),
            ["2030-03-10T03:30:00-04:00", "2030-03-11T02:30:00-04:00"],
            id="spring-forward-shift",
        ),
        # fall back: 01:30 occurs twice and runs once, on its first occurrence
        pytest.param(
            "30 1 * * *",
            {},
            datetime.datetime(2030, 11, 2, 12, tzinfo=UTC),
            ["2030-11-03T01:30:00-04:00", "2030-11-04T01:30:00-05:00"],
            id="fall-back-fixed",
        ),
        # fall back: a wildcard hour runs at both occurrences
        pytest.param(
            "30 * * * *",
            {},
            datetime.datetime(2030, 11, 3, 4, tzinfo=UTC),
            ["2030-11-03T00:30:00-04:00", "2030-11-03T01:30:00-04:00", "2030-11-03T01:30:00-05:00"],
            id="fall-back-wildcard",
        ),
    ],
)
async def test_a_cron_instance_previews_its_runs_across_new_york_dst_changes(
    expression: str, options: dict[str, Any], start: datetime.datetime, expected: list[str]
) -> None:
    app, job, runs, _ = _recording_app(app={"poll_interval": datetime.timedelta(hours=1)})
    clock = FakeClock(start)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "ny", schedule=expression, timezone="America/New_York", **options)
        planned = await _preview(ctx, job, "ny", len(expected))
        assert [r.at.isoformat() for r in planned] == expected
        assert all(r.at == r.scheduled_at for r in planned)
        await run_until(ctx, planned[-1].at.astimezone(UTC))
    assert runs == _utc(planned)


@pytest.mark.parametrize(
    ("stored", "policy"),
    [
        pytest.param({}, DstGap.TRANSITION, id="absent-means-the-default"),
        pytest.param({"dst_gap": "transition"}, DstGap.TRANSITION, id="transition"),
        pytest.param({"dst_gap": "shift"}, DstGap.SHIFT, id="shift"),
        pytest.param({"dst_gap": "skip"}, DstGap.SKIP, id="skip"),
    ],
)
def test_the_dst_gap_of_a_stored_instance_round_trips(stored: dict[str, Any], policy: DstGap) -> None:
    """``dst_gap`` is stored as its string value; a document without it (written before the policy
    existed, or with the default) gets the default of its expression when it is read back."""
    app = make_app()

    @app.dynamic_task()
    async def job(context: Context) -> None:
        pass

    spec = {"args": {}, "schedule": "30 2 * * *", "timezone": "America/New_York", **stored}
    instance = job.from_spec("ny", spec)
    assert instance.instance_spec() == spec
    assert instance.dst_gap == (DstGap(stored["dst_gap"]) if stored else None)
    schedule = instance.compiled_schedule
    assert isinstance(schedule, CronSchedule) and schedule.gap_policy is policy
