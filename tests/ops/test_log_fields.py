"""Structured fields on the core's log records about tasks and instances, and their JSON form."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import pytest

from pyncette import Context, FailureMode, Pyncette
from pyncette.log_format import JsonFormatter
from pyncette.testing import FakeClock
from tests.core.conftest import START

pytestmark = pytest.mark.anyio
MINUTE = datetime.timedelta(minutes=1)
FIELDS = ("task", "instance", "scheduled_at", "fencing_token", "attempt", "outcome")


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


def make_app() -> Pyncette:
    app = Pyncette(backend="memory", autoload_plugins=False)

    @app.partitioned_task(failure_mode=FailureMode.NONE, partition_count=4)
    async def flaky(context: Context) -> None:
        raise RuntimeError(f"attempt {context.attempt} fails")

    return app


async def test_a_failed_execution_logs_every_field_and_json_writes_them_as_keys(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    async with app.create(clock=FakeClock(START)) as ctx:
        await ctx.schedule_task("flaky", "user-1", execute_at=START)
        with caplog.at_level(logging.ERROR, logger="pyncette.execution"):
            assert await ctx.tick() == 1
        stored = await ctx.get_task("flaky", "user-1")
    (record,) = [r for r in caplog.records if r.name == "pyncette.execution"]
    assert fields(record)["fencing_token"] > 0
    assert fields(record) == {
        "task": "flaky",  # the task, never its partition scope
        "instance": "user-1",
        "scheduled_at": START.isoformat(),
        "fencing_token": fields(record)["fencing_token"],
        "attempt": 1,
        "outcome": "failed",
    }
    assert stored is not None and stored.status is not None
    assert stored.status.fencing_token == fields(record)["fencing_token"]
    document = json.loads(JsonFormatter().format(record))
    assert {name: document[name] for name in FIELDS} == fields(record)
    assert "RuntimeError: attempt 1 fails" in document["exception"]


async def test_a_lost_lease_logs_the_static_task_without_an_instance(caplog: pytest.LogCaptureFixture) -> None:
    app = Pyncette(backend="memory", autoload_plugins=False)

    @app.task(interval=MINUTE)
    async def taken_over(context: Context) -> None:
        # Another worker takes the slot over (a forced update): this run's commit is refused.
        repository = context.app_context.repository
        (state,) = (await repository.list_tasks("taken_over", limit=10)).states
        await repository.unregister_task(context.app_context.clock.now(), state.key)

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        clock.set(START + MINUTE)
        with caplog.at_level(logging.WARNING, logger="pyncette.execution"):
            await ctx.tick()
    (record,) = [r for r in caplog.records if r.name == "pyncette.execution"]
    assert record.levelno == logging.WARNING
    got = fields(record)
    assert "instance" not in got
    assert (got["task"], got["outcome"], got["attempt"]) == ("taken_over", "lease_lost", 1)
    assert datetime.datetime.fromisoformat(got["scheduled_at"]) == START + MINUTE


async def test_a_successful_run_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    app = Pyncette(backend="memory", autoload_plugins=False)

    @app.task(interval=MINUTE)
    async def quiet(context: Context) -> None:
        pass

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        clock.set(START + MINUTE)
        with caplog.at_level(logging.DEBUG, logger="pyncette"):
            assert await ctx.tick() == 1
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pyncette")] == []
