"""An update planned before a run committed must not make that slot run again.

Found by the soak test (SQLite, ten minutes): the driver re-planned an AT_MOST_ONCE instance from
``*/1`` to ``*/5`` seconds at 869.35; its registration waited 1.75 s for the database lock, and
meanwhile a worker ran and committed slot 870 under the old definition. The update then stored
``next_run = first_run(869.35) = 870`` and another worker ran slot 870 a second time. Here the
driver's late round trip is a driver clock that reads the planning time.
"""

from __future__ import annotations

import datetime

import pytest

from pyncette import Context, ExecutionMode, Pyncette, Task
from pyncette.testing import FakeClock, run_until
from tests.multiprocess.conftest import Store

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T = datetime.datetime(2030, 1, 1, tzinfo=UTC)


def seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


@pytest.mark.parametrize("mode", [ExecutionMode.AT_MOST_ONCE, ExecutionMode.AT_LEAST_ONCE])
async def test_an_update_planned_before_a_run_committed_does_not_run_that_slot_again(store: Store, mode: ExecutionMode) -> None:
    ran: list[datetime.datetime] = []

    def build() -> tuple[Pyncette, Task]:
        app = Pyncette(backend=store.backend, **store.options)

        @app.dynamic_task(execution_mode=mode)
        async def job(context: Context) -> None:
            ran.append(context.scheduled_at)

        return app, job

    (worker_app, _), (driver_app, template) = build(), build()
    worker_clock, driver_clock = FakeClock(T + seconds(4.5)), FakeClock(T + seconds(4.5))
    async with worker_app.create(clock=worker_clock) as worker, driver_app.create(clock=driver_clock) as driver:
        await driver.schedule_task(template, "x", schedule="* * * * * */1", version=1)
        worker_clock.set(T + seconds(5.1))
        assert await worker.tick() == 1, "slot 5 ran under the old definition"
        driver_clock.set(T + seconds(4.6))  # planned before that run committed, applied after it
        await driver.schedule_task(template, "x", schedule="* * * * * */5", version=2)
        await run_until(worker, T + seconds(9))  # the next slot of the new definition is 10
    assert ran == [T + seconds(5)], f"slot 5 ran {ran.count(T + seconds(5))} times"
