"""The scheduler on the PostgreSQL backend: selection by name, the 1.x factory style, push wake-ups."""

from __future__ import annotations

import datetime
from typing import Any

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.model import TaskKey
from pyncette.postgres import postgres_repository
from pyncette.testing import FakeClock, run_until

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
S = datetime.timedelta(seconds=1)


async def test_backend_selected_by_name(postgres_url: str, table_name: str) -> None:
    app = Pyncette(backend="postgres", postgres_url=postgres_url, postgres_table_name=table_name, configure_signals=False)
    assert app.backend_name == "postgres"
    static_runs: list[datetime.datetime] = []
    dynamic_runs: list[str] = []

    @app.task(interval=10 * S)
    async def tick(context: Context) -> None:
        static_runs.append(context.scheduled_at)

    @app.dynamic_task()
    async def remind(context: Context) -> None:
        dynamic_runs.append(context.task.name)

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_tasks([(remind, f"user-{i}", {"execute_at": START + 5 * S}) for i in range(20)])
        await run_until(ctx, START + 30 * S)
        assert await ctx.repository.get_task(TaskKey("remind", "user-0")) is None
    assert static_runs == [START + 10 * S, START + 20 * S, START + 30 * S]
    assert sorted(dynamic_runs) == sorted(f"user-{i}" for i in range(20))


async def test_pyncette_1_style_factory_and_option_names(postgres_url: str, table_name: str) -> None:
    app = Pyncette(
        repository_factory=postgres_repository,
        postgres_url=postgres_url,
        postgres_table_name=table_name,
        postgres_skip_table_create=False,
        configure_signals=False,
    )
    assert app.backend_name == "postgres"
    runs = 0

    @app.task(schedule="* * * * * */10")
    async def every_ten_seconds(context: Context) -> None:
        nonlocal runs
        runs += 1

    async with app.create(clock=FakeClock(START)) as ctx:
        await run_until(ctx, START + 60 * S)
    assert runs == 6


async def test_once_off_task_for_now_starts_without_waiting_for_a_poll(postgres_url: str, table_name: str) -> None:
    """A worker sleeping on a one-hour poll interval runs a task another worker schedules for now."""
    options: dict[str, Any] = {"backend": "postgres", "postgres_url": postgres_url, "postgres_table_name": table_name}
    worker = Pyncette(poll_interval=datetime.timedelta(hours=1), configure_signals=False, **options)
    scheduler = Pyncette(poll_interval=datetime.timedelta(hours=1), configure_signals=False, **options)
    ran = anyio.Event()

    @worker.dynamic_task()
    async def once(context: Context) -> None:
        ran.set()

    @scheduler.dynamic_task(name="once")
    async def once_elsewhere(context: Context) -> None:
        raise AssertionError("the scheduling app does not run tasks in this test")

    async with worker.create() as worker_ctx, scheduler.create() as scheduler_ctx, anyio.create_task_group() as group:
        repository = worker_ctx.repository
        first_poll_done = anyio.Event()
        claim_due = repository.claim_due

        async def observed_claim_due(*args: Any, **kwargs: Any) -> Any:
            try:
                return await claim_due(*args, **kwargs)
            finally:
                first_poll_done.set()

        repository.claim_due = observed_claim_due  # type: ignore[method-assign]
        group.start_soon(worker_ctx.run)
        await repository._wait_listening()  # type: ignore[attr-defined]
        # Once the worker found nothing to do, only a wake-up can make it look again within the hour.
        await first_poll_done.wait()
        await scheduler_ctx.schedule_task(once_elsewhere, "now", execute_at=datetime.datetime.now(UTC))
        with anyio.fail_after(10):
            await ran.wait()
        worker_ctx.shutdown()
