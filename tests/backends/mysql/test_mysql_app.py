"""The MySQL backend under the real scheduler: selected by name, driven by the controllable clock."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from pyncette import Context, ExecutionMode, Pyncette
from pyncette.model import TaskKey
from pyncette.mysql import MySQLRepository
from pyncette.testing import FakeClock, run_until

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
S = datetime.timedelta(seconds=1)


@pytest.mark.parametrize("mode", [ExecutionMode.AT_LEAST_ONCE, ExecutionMode.AT_MOST_ONCE])
async def test_backend_by_name_runs_static_and_dynamic_tasks(
    mysql_options: dict[str, Any], table_name: str, mode: ExecutionMode
) -> None:
    app = Pyncette(backend="mysql", **mysql_options, mysql_table_name=table_name, batch_size=7)
    ran: list[tuple[str, datetime.datetime]] = []

    @app.task(interval=10 * S, execution_mode=mode)
    async def tick(context: Context) -> None:
        ran.append(("tick", context.scheduled_at))

    @app.dynamic_task(execution_mode=mode)
    async def user(context: Context) -> None:
        ran.append((context.task.name, context.scheduled_at))

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        assert isinstance(ctx.repository, MySQLRepository)
        await ctx.schedule_tasks([(user, f"u{i:02d}", {"interval": 30 * S}) for i in range(20)])
        await ctx.schedule_task(user, "once", execute_at=START + 5 * S)
        await run_until(ctx, START + 60 * S)
        assert await ctx.repository.get_task(TaskKey("user", "once")) is None
        pages = await ctx.repository.list_tasks("user", limit=100)
    assert sum(1 for name, _ in ran if name == "tick") == 6
    assert sum(1 for name, _ in ran if name.startswith("u")) == 20 * 2
    assert [when for name, when in ran if name == "once"] == [START + 5 * S]
    assert len(pages.states) == 20
    assert all(state.locked_by is None for state in pages.states)
