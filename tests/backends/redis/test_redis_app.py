"""The Redis backend under the real scheduler: the seed program, and a server restart mid-run."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Callable

import pytest

from pyncette import Context, Pyncette
from pyncette.redis import redis_repository
from pyncette.testing import FakeClock, run_until
from tests.backends.redis.conftest import PrivateRedis
from tests.support.multiprocess import WorkerPool, wait_for
from tests.support.servers import free_port
from tests.support.startup import WAYS, assert_one_clean_error, start_app

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)


def seed_program(**options: Any) -> tuple[Pyncette, list[datetime.datetime]]:
    app = Pyncette(**options)
    runs: list[datetime.datetime] = []

    @app.task(schedule="* * * * * */10")
    async def foo(context: Context) -> None:
        runs.append(context.scheduled_at)

    return app, runs


@pytest.mark.anyio
@pytest.mark.parametrize("selection", ["repository_factory", "backend"])
async def test_the_seed_program_runs_every_ten_seconds(redis_url: str, namespace: str, selection: str) -> None:
    chosen: dict[str, Any] = (
        {"repository_factory": redis_repository} if selection == "repository_factory" else {"backend": "redis"}
    )
    app, runs = seed_program(redis_url=redis_url, redis_namespace=namespace, **chosen)
    clock = FakeClock(START)
    async with app.create(clock=clock) as context:
        await run_until(context, START + datetime.timedelta(minutes=1))
    assert runs == [START + datetime.timedelta(seconds=10 * step) for step in range(1, 7)]


@pytest.mark.multiprocess
@pytest.mark.parametrize("mode", ["at_most_once", "at_least_once"])
def test_workers_survive_a_restart_of_a_persistent_server(
    start_private_redis: Callable[..., PrivateRedis], tmp_path: Path, mode: str
) -> None:
    server = start_private_redis("--appendonly", "yes", "--appendfsync", "always")
    count = 400
    options = {"redis_url": server.url, "redis_namespace": "restart", "redis_timeout": 2}
    # Paced (10 at a time, 0.1 s each: at least 2 s of work) so that the restart meets work still to do.
    with WorkerPool("redis", options, tmp_path / "ledger", mode=mode, lease=4, concurrency_limit=10) as workers:
        names = workers.seed(count, sleep=0.1)
        workers.start(2)
        wait_for(lambda: len(workers.finished()) >= count // 4, timeout=60, what="a quarter of the work")
        server.restart()  # SIGTERM: the server fsyncs, stops and comes back with its append-only file
        done = len(workers.finished())
        assert done < count, "the restart came after the work was done: it proves nothing"
        wait_for(lambda: len(workers.finished()) > done, timeout=150, what="progress after the restart")
        wait_for(lambda: len(workers.finished()) >= count, timeout=120, what="every instance to run")
        wait_for(lambda: not workers.remaining(), timeout=60, what="every instance committed")
        logs = workers.stop()
    finished = workers.finished()
    assert set(finished) == set(names), "nothing due was lost"
    assert max(finished.values()) == 1, f"ran twice: {[name for name, runs in finished.items() if runs > 1][:10]}"
    assert all(log.count("Traceback") == 0 or "BackendError" in log for log in logs.values()), logs


@pytest.mark.parametrize("way", WAYS)
def test_an_unreachable_server_stops_the_start_with_one_error_line(tmp_path: Path, way: str) -> None:
    secret = "Startup-S3cret-pw"
    options = {"redis_url": f"redis://someone:{secret}@127.0.0.1:{free_port()}/0", "redis_timeout": 2}
    line = assert_one_clean_error(start_app(tmp_path, options, way=way), option="redis_url", secret=secret)
    assert "BackendError" in line and "someone:***@127.0.0.1" in line
