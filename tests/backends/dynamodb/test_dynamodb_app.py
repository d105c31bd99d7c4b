"""The scheduler on DynamoDB: selected by name or by factory, with the controllable clock."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from pyncette import Context, ExecutionMode, Pyncette
from pyncette.dynamodb import constants as c
from pyncette.dynamodb import dynamodb_repository
from pyncette.errors import UnknownOptionError
from pyncette.testing import FakeClock, run_until
from tests.backends.dynamodb.conftest import DUMMY_ENVIRONMENT, REGION
from tests.support.servers import free_port
from tests.support.startup import assert_one_clean_error, start_app

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
S = datetime.timedelta(seconds=1)


async def test_app_selects_the_backend_by_name_and_runs_static_and_dynamic_tasks(dynamodb_options: dict[str, Any]) -> None:
    app = Pyncette(backend="dynamodb", configure_signals=False, **dynamodb_options)
    assert app.backend_name == "dynamodb"
    ran: list[tuple[str, datetime.datetime]] = []

    @app.task(interval=10 * S)
    async def tick(context: Context) -> None:
        ran.append(("tick", context.scheduled_at))

    async def remind_body(context: Context) -> None:
        ran.append((context.task.name, context.scheduled_at))

    remind = app.dynamic_task(name="remind", execution_mode=ExecutionMode.AT_MOST_ONCE)(remind_body)

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(remind, "user-1", interval=15 * S)
        await ctx.schedule_task(remind, "user-2", execute_at=START + 5 * S)
        await run_until(ctx, START + 30 * S)
        listed = await ctx.list_tasks(remind)
    assert sorted(ran) == sorted(
        [
            ("tick", START + 10 * S),
            ("tick", START + 20 * S),
            ("tick", START + 30 * S),
            ("user-1", START + 15 * S),
            ("user-1", START + 30 * S),
            ("user-2", START + 5 * S),
        ]
    )
    assert [task.name for task in listed.tasks] == ["user-1"]

    # A second app on the same table sees what the first one stored.
    again = Pyncette(repository_factory=dynamodb_repository, configure_signals=False, **dynamodb_options)
    again.dynamic_task(name="remind", execution_mode=ExecutionMode.AT_MOST_ONCE)(remind_body)
    async with again.create(clock=FakeClock(START + 30 * S)) as ctx:
        found = await ctx.get_task("remind", "user-1")
    assert found is not None


async def test_partitions_of_a_partitioned_task_are_distinct_partition_keys(
    dynamodb_options: dict[str, Any], moto_endpoint: str
) -> None:
    app = Pyncette(backend="dynamodb", configure_signals=False, dynamodb_partition_prefix="app", **dynamodb_options)

    @app.partitioned_task(partition_count=4, execution_mode=ExecutionMode.AT_MOST_ONCE)
    async def fan(context: Context) -> None:
        ran.append(context.task.name)

    ran: list[str] = []
    names = [f"n{i:02d}" for i in range(24)]
    async with app.create(clock=FakeClock(START)) as ctx:
        for name in names:
            await ctx.schedule_task(fan, name, execute_at=START + S)
        listed = await ctx.list_tasks(fan, limit=100)
        assert sorted(task.name for task in listed.tasks) == names
        await run_until(ctx, START + 2 * S)
    assert sorted(ran) == names

    async with get_session().create_client("dynamodb", region_name=REGION, endpoint_url=moto_endpoint) as client:
        items = (await client.scan(TableName=dynamodb_options["dynamodb_table_name"]))["Items"]
    partition_keys = {item[c.ATTR_PK]["S"] for item in items if item[c.ATTR_PK]["S"] != c.META_PARTITION_KEY}
    assert len(partition_keys) > 1
    assert all(key.startswith("app#fan:") for key in partition_keys)


def test_options_of_another_backend_are_refused_by_name(dynamodb_options: dict[str, Any]) -> None:
    with pytest.raises(UnknownOptionError, match="redis_url"):
        Pyncette(backend="dynamodb", redis_url="redis://127.0.0.1", **dynamodb_options)


def test_an_unreachable_endpoint_stops_the_start_with_one_error_line(tmp_path: Path) -> None:
    options = {"dynamodb_region_name": REGION, "dynamodb_endpoint": f"http://127.0.0.1:{free_port()}"}
    result = start_app(tmp_path, options, env=DUMMY_ENVIRONMENT)
    line = assert_one_clean_error(result, option="dynamodb_endpoint", secret=DUMMY_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"])
    assert "BackendError" in line
