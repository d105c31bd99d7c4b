"""Two apps with different namespaces or tables on one server never see each other's tasks."""

from __future__ import annotations

import datetime
from typing import Any, Iterator

import pytest

from pyncette import Context, Pyncette, Task
from pyncette.testing import FakeClock, run_until
from tests.multiprocess.conftest import Store

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
SEPARATE_BY = ("redis_namespace", "postgres_table_name", "mysql_table_name", "dynamodb_table_name", "sqlite_table_name")


@pytest.fixture
def neighbour(store: Store) -> Iterator[dict[str, Any]]:
    """The options of a second app on the same server (or file), in its own namespace or table."""
    options = dict(store.options)
    key = next((k for k in SEPARATE_BY if k in options), "sqlite_table_name")
    options[key] = f"{options.get(key, 'pyncette')}_neighbour"
    yield options
    if store.backend == "postgres":
        import anyio
        import asyncpg

        async def drop() -> None:
            connection = await asyncpg.connect(options["postgres_url"])
            await connection.execute(f'DROP TABLE IF EXISTS "{options["postgres_table_name"]}"')
            await connection.close()

        anyio.run(drop)
    elif store.backend == "mysql":
        import pymysql  # type: ignore[import-untyped]

        connection = pymysql.connect(
            host=options["mysql_host"],
            port=int(options["mysql_port"]),
            user=options["mysql_user"],
            password="",
            database=options["mysql_database"],
        )
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS `{options['mysql_table_name']}`")
        connection.close()
    # redis: the store fixture deletes every key containing its namespace, this one's included;
    # sqlite and dynamodb: the file and the moto server go with the test.


def build(backend: str, options: dict[str, Any], ran: list[str]) -> tuple[Pyncette, Task]:
    app = Pyncette(backend=backend, **options)

    @app.dynamic_task()
    async def shared(context: Context) -> None:
        ran.append(context.task.name)

    @app.task(interval=datetime.timedelta(minutes=1))
    async def tick(context: Context) -> None:
        ran.append("tick")

    return app, shared


async def test_two_apps_in_different_namespaces_never_see_each_others_tasks(store: Store, neighbour: dict[str, Any]) -> None:
    ran_a: list[str] = []
    ran_b: list[str] = []
    app_a, shared_a = build(store.backend, store.options, ran_a)
    app_b, shared_b = build(store.backend, neighbour, ran_b)
    clock_a, clock_b = FakeClock(START), FakeClock(START)
    async with app_a.create(clock=clock_a) as a, app_b.create(clock=clock_b) as b:
        await a.schedule_tasks([(shared_a, f"a{i}", {"execute_at": START}) for i in range(5)])
        await b.schedule_task(shared_b, "b0", execute_at=START)
        assert [t.name for t in (await b.list_tasks(shared_b)).tasks] == ["b0"]
        assert await b.get_task(shared_b, "a0") is None
        await run_until(b, START + datetime.timedelta(minutes=5))
        assert sorted(t.name for t in (await a.list_tasks(shared_a)).tasks) == [f"a{i}" for i in range(5)], "b left a's alone"
        await b.unschedule_task(shared_b, "a1")  # a's instance of the same name is not b's to remove
        await run_until(a, START + datetime.timedelta(minutes=5))
    assert sorted(ran_b) == ["b0", *["tick"] * 5], "b ran its own instance and its own static task"
    assert sorted(ran_a) == [*(f"a{i}" for i in range(5)), *["tick"] * 5], "a ran all of its own, and b's removal did not reach a"
