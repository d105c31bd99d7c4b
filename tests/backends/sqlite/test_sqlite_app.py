"""The SQLite backend under the scheduler: selection by name, a whole app run, persistence across processes."""

from __future__ import annotations

import datetime
import pathlib
import subprocess
import sys
import textwrap

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.testing import FakeClock, run_until
from tests.support.startup import WAYS, assert_one_clean_error, start_app

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
S = datetime.timedelta(seconds=1)


def test_backend_is_selected_by_name_and_by_its_options(database: str) -> None:
    assert Pyncette(backend="sqlite", sqlite_database=database).backend_name == "sqlite"
    assert Pyncette(sqlite_database=database).backend_name == "sqlite"


async def test_an_app_runs_static_and_dynamic_tasks_on_a_file(database: str, table_name: str) -> None:
    app = Pyncette(backend="sqlite", sqlite_database=database, sqlite_table_name=table_name)
    static: list[datetime.datetime] = []
    dynamic: list[tuple[str, datetime.datetime]] = []

    @app.task(interval=10 * S)
    async def tick(context: Context) -> None:
        static.append(context.scheduled_at)

    @app.dynamic_task()
    async def remind(context: Context) -> None:
        dynamic.append((context.task.name, context.scheduled_at))

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_tasks([(remind, f"user-{i}", {"interval": 20 * S}) for i in range(30)])
        await ctx.schedule_task(remind, "once", execute_at=START + 5 * S)
        await run_until(ctx, START + 60 * S)
        assert await ctx.get_task(remind, "once") is None
    assert static == [START + i * 10 * S for i in range(1, 7)]
    assert len(dynamic) == 30 * 3 + 1
    assert sorted(when for name, when in dynamic if name == "user-7") == [START + 20 * S, START + 40 * S, START + 60 * S]


APP_MODULE = textwrap.dedent(
    """
    import sys
    from pyncette import Context, Pyncette

    app = Pyncette(backend="sqlite", sqlite_database=sys.argv[1], sqlite_table_name=sys.argv[2])

    @app.dynamic_task()
    async def deliver(context: Context) -> None:
        print("ran", context.task.name, context.args["n"], flush=True)
    """
)

SCHEDULE = textwrap.dedent(
    """
    import datetime, anyio
    from app_module import app, deliver

    async def main():
        async with app.create() as ctx:
            past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
            await ctx.schedule_tasks([(deliver, f"msg-{i}", {"execute_at": past, "n": i}) for i in range(40)])
        print("scheduled", flush=True)

    anyio.run(main)
    """
)

EXECUTE = textwrap.dedent(
    """
    import anyio
    from app_module import app, deliver

    async def main():
        async with app.create() as ctx:
            executed = await ctx.tick()
            left = await ctx.list_tasks(deliver)
            print("executed", executed, "left", len(left.tasks), flush=True)

    anyio.run(main)
    """
)


async def test_schedule_in_one_process_and_execute_in_another_started_later(
    tmp_path: pathlib.Path, database: str, table_name: str
) -> None:
    # The scripts' folder is on each child's sys.path, so both import the same app definition.
    for name, text in (("app_module.py", APP_MODULE), ("schedule.py", SCHEDULE), ("execute.py", EXECUTE)):
        (tmp_path / name).write_text(text)

    def run(script: str) -> str:
        command = [sys.executable, str(tmp_path / script), database, table_name]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert (await anyio.to_thread.run_sync(run, "schedule.py")).splitlines() == ["scheduled"]
    output = (await anyio.to_thread.run_sync(run, "execute.py")).splitlines()
    assert output[-1] == "executed 40 left 0"
    assert sorted(int(line.split()[2]) for line in output[:-1]) == list(range(40))


@pytest.mark.parametrize("way", WAYS)
def test_a_bad_table_name_stops_the_start_with_one_error_line(tmp_path: pathlib.Path, way: str) -> None:
    options = {"sqlite_database": str(tmp_path / "app.db"), "sqlite_table_name": "bad-name"}
    line = assert_one_clean_error(start_app(tmp_path, options, way=way), option="sqlite_table_name")
    assert "ConfigurationError" in line and "'bad-name'" in line
