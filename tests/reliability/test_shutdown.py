"""Graceful shutdown under load: SIGTERM while 100 tasks run.

Polling stops at once (instances due after the signal are not started), tasks that finish within
the grace period commit, the others are cancelled and their leases released, so after a clean
shutdown no instance is left locked in the store.
"""

from __future__ import annotations

import datetime
import signal
import time
from pathlib import Path

import anyio
import pytest

from pyncette import Context, Pyncette
from tests.multiprocess.conftest import Store
from tests.support.multiprocess import WorkerPool, wait_for
from tests.support.worker_app import build_app

SHORT = 50
LONG = 50
GRACE = 5.0  # the worker program's shutdown_grace


def stored(pool: WorkerPool, names: list[str]) -> dict[str, tuple[str | None, datetime.datetime | None] | None]:
    """(locked_by, locked_until) of each named instance, or None when it is gone."""
    probe = pool.ledger / "probe"
    probe.mkdir(exist_ok=True)

    async def read() -> dict[str, tuple[str | None, datetime.datetime | None] | None]:
        app, task = build_app({**pool.config(), "ledger": str(probe)})
        found: dict[str, tuple[str | None, datetime.datetime | None] | None] = {}
        async with app.create() as context:
            for name in names:
                instance = await context.get_task(task, name)
                found[name] = (
                    None
                    if instance is None or instance.status is None
                    else (
                        instance.status.locked_by,
                        instance.status.locked_until,
                    )
                )
        return found

    return anyio.run(read)


@pytest.mark.multiprocess
@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_sigterm_under_load_drains_cancels_and_releases_every_lease(store: Store, tmp_path: Path) -> None:
    pool = WorkerPool(store.backend, store.options, tmp_path / "ledger", environment=store.environment)
    with pool:
        short = pool.seed(SHORT, prefix="short", sleep=1.5)
        long = pool.seed(LONG, prefix="long", sleep=600)
        (worker,) = pool.start(1)
        wait_for(lambda: len(pool.started()) == SHORT + LONG, timeout=60, what="100 tasks running at once")
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        logs = list(pool.ledger.glob("worker-*.stderr"))
        wait_for(lambda: any("SIGTERM" in log.read_text() for log in logs), timeout=10, what="the worker to take the signal")
        late = pool.seed(10, prefix="late")
        worker.wait(timeout=GRACE + 20)
        stopped = time.monotonic() - signalled
        log = logs[0].read_text()
    assert worker.returncode == 0, log[-3000:]
    assert stopped < GRACE + 10, f"stopped {stopped:.1f}s after SIGTERM with a {GRACE}s grace period"
    finished, started = pool.finished(), pool.started()
    assert set(finished) == set(short), "the short tasks finished within the grace period"
    assert not any(name in started for name in late), "nothing was claimed after the signal"
    assert "cancelling 50 task(s)" in log
    states = stored(pool, short + long + late)
    assert all(states[name] is None for name in short), "finished once-off instances were committed"
    leftover = {name: state for name, state in states.items() if name not in short}
    assert all(state is not None for state in leftover.values()), "cancelled and unclaimed instances stay stored"
    locked = {name: state for name, state in leftover.items() if state is not None and state[0] is not None}
    assert not locked, f"{len(locked)} instances still locked after a clean shutdown: {list(locked.items())[:3]}"


@pytest.mark.anyio
async def test_shutdown_of_an_embedded_app_releases_every_lease_on_the_memory_backend() -> None:
    app = Pyncette(backend="memory", poll_interval=0.05, shutdown_grace=1.0, configure_signals=False)
    running = 0
    all_running = anyio.Event()
    finished: list[str] = []

    @app.dynamic_task(lease_duration=datetime.timedelta(minutes=5))
    async def job(context: Context) -> None:
        nonlocal running
        running += 1
        if running == SHORT + LONG:
            all_running.set()
        await anyio.sleep(float(context.args["sleep"]))
        finished.append(context.task.name)

    now = datetime.datetime.now(datetime.timezone.utc)
    async with app.create() as ctx:
        await ctx.schedule_tasks(
            [(job, f"short{i}", {"execute_at": now, "sleep": 0.5}) for i in range(SHORT)]
            + [(job, f"long{i}", {"execute_at": now, "sleep": 600}) for i in range(LONG)]
        )
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(ctx.run)
                await all_running.wait()
                ctx.shutdown()
                await ctx.schedule_task(job, "late", execute_at=now, sleep=0)
                began = time.monotonic()
            stopped = time.monotonic() - began
        states = {name: await ctx.get_task(job, name) for name in [f"long{i}" for i in range(LONG)] + ["late"]}
    assert stopped < 1.0 + 2.0, f"run() returned {stopped:.1f}s after shutdown() with a 1s grace period"
    assert sorted(finished) == sorted(f"short{i}" for i in range(SHORT))
    assert all(task is not None and task.status is not None for task in states.values())
    locked = [name for name, task in states.items() if task is not None and task.status is not None and task.status.locked_by]
    assert not locked, f"still locked after shutdown: {locked[:5]}"
