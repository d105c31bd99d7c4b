"""Rows a worker cannot read are logged once and skipped, never stop the loop, and stay in place.

The rows are written directly through the repository API, as a corrupted store, a newer version
of pyncette or another app would leave them. Every backend, driven by a controllable clock.
"""

from __future__ import annotations

import datetime
import logging

import pytest

from pyncette import Context, Pyncette
from pyncette.model import Registration, TaskKey
from pyncette.testing import FakeClock, run_until
from tests.multiprocess.conftest import Store
from tests.reliability.conftest import app_options

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
END = START + datetime.timedelta(minutes=10)  # twenty lease periods

UNREADABLE_SPECS = {
    "truncated-json": '{"args": {',
    "not-an-object": "[1, 2, 3]",
    "bad-cron": '{"args": {}, "schedule": "every tuesday-ish"}',
    "bad-interval": '{"args": {}, "interval": "soon"}',
    "args-not-a-mapping": '{"args": "x", "interval": 10.0}',
    "bad-execute-at": '{"args": {}, "execute_at": "yesterday"}',
    "no-schedule": '{"args": {}}',
}
NEWER_VERSION_SPEC = '{"args": {}, "interval": 10.0, "skip_on_holidays": {"calendar": "ie"}}'


def build(store: Store) -> tuple[Pyncette, list[str], list[datetime.datetime]]:
    app = Pyncette(**app_options(store, poll_interval=datetime.timedelta(seconds=5)))
    ran: list[str] = []
    control: list[datetime.datetime] = []

    @app.dynamic_task(lease_duration=datetime.timedelta(seconds=30))
    async def hostile(context: Context) -> None:
        ran.append(context.task.name)

    @app.task(interval=datetime.timedelta(seconds=10))
    async def heartbeat(context: Context) -> None:
        control.append(context.scheduled_at)

    return app, ran, control


def raw(name: str, spec: str, *, task: str = "hostile", data: str = "{}") -> Registration:
    return Registration(key=TaskKey(task, name), spec=spec, data=data, next_run=START)


def mentions(caplog: pytest.LogCaptureFixture, name: str) -> int:
    return sum(1 for record in caplog.records if record.levelno >= logging.WARNING and name in record.getMessage())


async def test_unreadable_specs_are_logged_once_skipped_and_kept(backend: Store, caplog: pytest.LogCaptureFixture) -> None:
    app, ran, control = build(backend)
    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task("hostile", "good", interval=datetime.timedelta(seconds=10))
        await ctx.repository.register_tasks(START, [raw(name, spec) for name, spec in UNREADABLE_SPECS.items()])
        await run_until(ctx, END)
        kept = {name: await ctx.repository.get_task(TaskKey("hostile", name)) for name in UNREADABLE_SPECS}
    assert ran.count("good") == 60, "the readable instance kept its schedule"
    assert len(control) == 60, "the static task kept its schedule"
    assert set(ran) == {"good"}, "nothing unreadable ran"
    assert all(state is not None and state.spec == UNREADABLE_SPECS[name] for name, state in kept.items()), "rows stay as written"
    logged = {name: mentions(caplog, name) for name in UNREADABLE_SPECS}
    assert logged == dict.fromkeys(UNREADABLE_SPECS, 1), f"each unreadable row logged exactly once: {logged}"


async def test_a_row_with_fields_from_a_newer_version_is_logged_once_skipped_and_kept(
    backend: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown field may change what the row means: running it with the field ignored is unsafe."""
    app, ran, control = build(backend)
    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.repository.register_tasks(START, [raw("newer", NEWER_VERSION_SPEC)])
        await run_until(ctx, END)
        state = await ctx.repository.get_task(TaskKey("hostile", "newer"))
    assert len(control) == 60
    assert "newer" not in ran, "a row from a newer version is not run with its new fields ignored"
    assert state is not None and state.spec == NEWER_VERSION_SPEC
    assert mentions(caplog, "newer") == 1


async def test_a_row_with_corrupted_bookkeeping_is_logged_once_skipped_and_kept(
    backend: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app, ran, control = build(backend)
    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.repository.register_tasks(START, [raw("bad-data", '{"args": {}, "interval": 10.0}', data="{not json")])
        await run_until(ctx, END)
        state = await ctx.repository.get_task(TaskKey("hostile", "bad-data"))
    assert len(control) == 60
    assert "bad-data" not in ran
    assert state is not None
    assert mentions(caplog, "bad-data") == 1, "logged once, not once per lease period"


async def test_instances_of_a_task_no_worker_knows_stay_in_place(backend: Store) -> None:
    app, ran, control = build(backend)
    clock = FakeClock(START)
    spec = '{"args": {}, "interval": 10.0}'
    async with app.create(clock=clock) as ctx:
        await ctx.repository.register_tasks(START, [raw("orphan", spec, task="retired_task")])
        await run_until(ctx, END)
        state = await ctx.repository.get_task(TaskKey("retired_task", "orphan"))
    assert len(control) == 60 and not ran
    assert state is not None and state.spec == spec and state.locked_by is None, "untouched: no worker polls that task"
