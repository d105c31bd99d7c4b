"""The faults of the in-process soak: a killed worker leaves its lease in place; a cut fails calls both ways."""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path

import pytest

from pyncette.errors import BackendError
from pyncette.memory import MemoryRepository
from pyncette.model import Registration, TaskKey
from tests.soak.driver import LEASE, _Driver, read_ledger, wait_until
from tests.soak.in_process import InProcessFleet, WorkerKilled, WorkerStore, factory_of
from tests.support.soak_worker import DYNAMIC_ALO, DYNAMIC_AMO, build_soak_app

pytestmark = pytest.mark.anyio

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def _registration(name: str) -> Registration:
    return Registration(key=TaskKey("t", name), spec="{}", data="", next_run=NOW)


async def test_a_severed_store_refuses_every_call() -> None:
    shared = MemoryRepository()
    store = WorkerStore(shared, random.Random(1), failure_rate=0.0)
    await store.register_tasks(NOW, [_registration("a")])
    store.sever()
    with pytest.raises(WorkerKilled):
        await store.claim_due(NOW, "t", owner="w", lease_duration=datetime.timedelta(seconds=1), limit=1)
    with pytest.raises(WorkerKilled):
        await store.register_tasks(NOW, [_registration("b")])
    stored = await shared.get_task(TaskKey("t", "a"))
    assert stored is not None and stored.locked_by is None
    assert await shared.get_task(TaskKey("t", "b")) is None


async def test_a_disturbed_store_loses_some_requests_and_some_answers() -> None:
    shared = MemoryRepository()
    store = WorkerStore(shared, random.Random(7), failure_rate=1.0)
    store.disturb(60)
    for index in range(40):
        with pytest.raises(BackendError):
            await store.register_tasks(NOW, [_registration(f"i{index}")])
    applied = len((await shared.list_tasks("t", limit=100)).states)
    assert 0 < applied < 40  # some calls failed after taking effect, some before
    store.disturb(0)
    assert await store.unregister_task(NOW, TaskKey("t", "absent")) is False  # over: calls go through again


async def test_a_killed_worker_keeps_its_lease_and_records_nothing_more(tmp_path: Path) -> None:
    shared = MemoryRepository()
    fleet = InProcessFleet(tmp_path, {"lease": LEASE}, shared, random.Random(3))
    app, templates = build_soak_app({"lease": LEASE}, repository_factory=factory_of(shared))
    async with app.create() as driver, fleet.running():
        at = datetime.datetime.now(datetime.timezone.utc)
        await driver.schedule_task(templates[DYNAMIC_ALO], "long", execute_at=at, sleep=30)
        worker = await fleet.start_worker()
        await wait_until(
            lambda: any(r.instance == f"{DYNAMIC_ALO}/long" for r in read_ledger(tmp_path)), timeout=10, what="the run to start"
        )
        await fleet.kill(worker)
        assert fleet.live() == []
        state = await shared.get_task(TaskKey(DYNAMIC_ALO, "long"))
        assert state is not None and state.locked_by == f"soak-{worker}"  # not released
        assert state.locked_until is not None and state.locked_until > datetime.datetime.now(datetime.timezone.utc)
        assert await fleet.stop() == {worker: ""}  # what a dead worker would log is dropped
    records = [json.loads(line) for line in (tmp_path / f"{worker}.jsonl").read_text().splitlines()]
    long_runs = [r["run"] for r in records if r.get("instance") == f"{DYNAMIC_ALO}/long"]
    assert len(long_runs) == 1
    assert [r["ev"] for r in records if r["run"] == long_runs[0]] == ["start"]


async def test_a_cut_disturbs_the_workers_that_are_up_and_spares_one_still_starting(tmp_path: Path) -> None:
    fleet = InProcessFleet(tmp_path, {"lease": LEASE}, MemoryRepository(), random.Random(5), failure_rate=1.0)
    async with fleet.running():
        up = await fleet.start_worker()
        await wait_until(lambda: fleet.workers[up].context is not None, timeout=10, what="the first worker to start")
        starting = await fleet.start_worker()
        await fleet.cut()
        assert fleet.workers[up].store.disturbed_until > 0
        assert fleet.workers[starting].store.disturbed_until == 0
        await wait_until(lambda: fleet.workers[starting].context is not None, timeout=10, what="the second worker to start")
        await wait_until(lambda: any("soak cut" in line for line in fleet.workers[up].log), timeout=5, what="a failed call")
        logs = await fleet.stop()
    assert "soak cut" not in logs[starting]


class _Accepting:
    """A stand-in for the driver's app context that accepts every change."""

    async def schedule_task(self, *args: object, **kwargs: object) -> None:
        pass

    pause_task = resume_task = unschedule_task = schedule_task


async def test_the_driver_keeps_the_changing_recurring_instances_within_max_live(tmp_path: Path) -> None:
    fleet = InProcessFleet(tmp_path / "ledger", {}, MemoryRepository(), random.Random(1))
    driver = _Driver(fleet, random.Random(7), max_live=3)
    templates = {DYNAMIC_ALO: object(), DYNAMIC_AMO: object()}
    most = 0
    for _ in range(300):
        await driver.step(_Accepting(), templates)
        recurring = [i for i in driver.instances.values() if not i.steady and i.execute_at is None]
        most = max(most, len(recurring))
    assert most == 3, "the bound is reached and never passed"
    assert sum(e.op == "unschedule" for e in driver.events) > 0
