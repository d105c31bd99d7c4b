"""Workers whose clocks are minutes off, against the real stores that have a clock of their own.

Each test runs a correct worker (the system clock, which this machine's servers share) and a
skewed one (:class:`pyncette.testing.SkewedClock`) on one store, polls once with ``tick`` and
counts executions. The same skewed worker without correction (``clock_sync=False``) shows the
failure that correction prevents, so each test can fail.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyncette import Context, Pyncette
from pyncette.model import TaskKey
from pyncette.testing import SkewedClock
from tests.multiprocess.conftest import STORES, Store

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
S = datetime.timedelta(seconds=1)
MINUTE = 60 * S
SKEW = 5 * MINUTE


@pytest.fixture(params=["postgres", "mysql", "redis"])
def clocked_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    yield from STORES[request.param](tmp_path, monkeypatch)


def worker(store: Store, runs: list[str], **options: Any) -> Pyncette:
    """An app with the dynamic task ``job``, which records the instances it runs in ``runs``."""
    app = Pyncette(
        backend=store.backend, configure_signals=False, poll_interval=datetime.timedelta(hours=1), **store.options, **options
    )

    @app.dynamic_task(name="job", lease_duration=MINUTE)
    async def job(context: Context) -> None:
        runs.append(context.task.name)

    return app


async def test_a_worker_ahead_does_not_run_work_before_it_is_due_by_the_store(clocked_store: Store) -> None:
    runs: list[str] = []
    async with worker(clocked_store, runs).create() as correct:
        await correct.schedule_task("job", "soon", execute_at=correct.clock.now() + 2 * MINUTE)

    async with worker(clocked_store, runs).create(clock=SkewedClock(SKEW)) as ahead:
        assert abs(ahead.clock.now() - datetime.datetime.now(UTC)) < S
        assert await ahead.tick() == 0
    assert runs == []

    async with worker(clocked_store, runs, clock_sync=False).create(clock=SkewedClock(SKEW)) as uncorrected:
        assert await uncorrected.tick() == 1
    assert runs == ["soon"]


async def test_a_worker_ahead_does_not_take_over_a_live_lease(clocked_store: Store) -> None:
    runs: list[str] = []
    key = TaskKey("job", "held")
    async with worker(clocked_store, runs).create() as correct:
        await correct.schedule_task("job", "held", execute_at=correct.clock.now() - S)
        claim = await correct.repository.claim_due(
            correct.clock.now(), "job", owner="correct-worker", lease_duration=MINUTE, limit=10
        )
        assert [c.state.key for c in claim.claimed] == [key]
        held = claim.claimed[0].state

    async with worker(clocked_store, runs).create(clock=SkewedClock(SKEW)) as ahead:
        assert await ahead.tick() == 0
        assert await ahead.repository.get_task(key) == held
    assert runs == []

    async with worker(clocked_store, runs, clock_sync=False).create(clock=SkewedClock(SKEW)) as uncorrected:
        assert await uncorrected.tick() == 1
    assert runs == ["held"]


async def test_a_worker_behind_runs_due_work_on_time(clocked_store: Store) -> None:
    runs: list[str] = []
    async with worker(clocked_store, runs).create() as correct:
        await correct.schedule_task("job", "due", execute_at=correct.clock.now() - S)

    async with worker(clocked_store, runs, clock_sync=False).create(clock=SkewedClock(-SKEW)) as uncorrected:
        assert await uncorrected.tick() == 0
    assert runs == []

    async with worker(clocked_store, runs).create(clock=SkewedClock(-SKEW)) as behind:
        assert abs(behind.clock.now() - datetime.datetime.now(UTC)) < S
        assert await behind.tick() == 1
    assert runs == ["due"]
