"""Several worker processes on one real store, executions counted from the workers' ledger."""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

import pytest

from tests.multiprocess.conftest import Store
from tests.support.multiprocess import WorkerPool, by_instance, wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.multiprocess

INSTANCES = 2_000
WORKERS = 3


def pool(store: Store, tmp_path: Path, **kwargs: object) -> WorkerPool:
    return WorkerPool(store.backend, store.options, tmp_path / "ledger", environment=store.environment, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["at_most_once", "at_least_once"])
def test_three_workers_execute_each_due_instance_exactly_once(store: Store, tmp_path: Path, mode: str) -> None:
    # "With no failures" includes no lease expiring under a loaded 2-core machine and a
    # single-threaded moto: leases outlast the whole drain, so any duplicate is a real one.
    # Paced (10 executions of 10 ms at a time per worker), one worker alone would need 2 s for the
    # lot, ten of its 0.2 s polls: the others always find work left, so all three compete.
    with pool(store, tmp_path, mode=mode, lease=600, concurrency_limit=10) as workers:
        workers.start(WORKERS)
        # Seed once every worker is up, so that all of them compete for the same due instances.
        wait_for(lambda: len(list(workers.ledger.glob("*.log"))) == WORKERS, timeout=60, what="workers to start")
        names = workers.seed(INSTANCES, sleep=0.01)
        wait_for(lambda: len(workers.finished()) >= INSTANCES, timeout=300, what=f"{INSTANCES} executions")
        wait_for(lambda: not workers.remaining(), timeout=60, what="every instance committed")
        logs = workers.stop()
    finished = workers.finished()
    duplicates = {name: count for name, count in finished.items() if count > 1}
    assert not duplicates, f"executed more than once: {list(duplicates.items())[:10]}"
    assert set(finished) == set(names)
    assert len({entry.pid for entry in workers.entries()}) == WORKERS, "every worker took part"
    assert all("Traceback" not in log for log in logs.values()), logs


def test_a_worker_killed_mid_task_has_its_task_rerun_after_the_lease_expires(store: Store, tmp_path: Path) -> None:
    lease = 3.0
    with pool(store, tmp_path, lease=lease, heartbeat=1.0) as workers:
        workers.seed(1, prefix="slow", sleep=4.0)
        (victim,) = workers.start(1)
        wait_for(lambda: workers.started()["slow000000"] == 1, timeout=60, what="the victim to start the task")
        workers.kill(victim)
        (survivor,) = workers.start(1)
        wait_for(lambda: workers.finished()["slow000000"] == 1, timeout=60, what="the task to be re-run to its end")
        workers.stop()
    (_, events) = next(by_instance(workers.entries()))
    first, second, end = events
    assert (first.event, second.event, end.event) == ("start", "start", "end")
    assert first.pid == victim.pid and second.pid == end.pid == survivor.pid
    assert second.at - first.at >= lease - 0.5, "the re-run waited for the lease to expire"
    assert first.token is not None and second.token is not None and second.token > first.token


def test_instances_scheduled_by_one_process_run_in_another_started_later(store: Store, tmp_path: Path) -> None:
    with pool(store, tmp_path) as workers:
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        names = workers.seed(20, execute_at=later)
        workers.start(1)
        wait_for(lambda: len(workers.finished()) == 20, timeout=60, what="the persisted instances to run")
        workers.stop()
    assert set(workers.finished()) == set(names)
    assert min(entry.at for entry in workers.entries()) >= later.timestamp(), "nothing ran before it was due"


@pytest.mark.parametrize("mode", ["at_most_once", "at_least_once"])
def test_workers_survive_cut_connections(networked_store: Store, tmp_path: Path, mode: str) -> None:
    store = networked_store
    assert store.address is not None and store.via_proxy is not None
    count = 600
    with TcpProxy(*store.address) as proxy:
        proxied = WorkerPool(
            store.backend,
            store.via_proxy(proxy.port),
            tmp_path / "ledger",
            mode=mode,
            lease=5,
            environment=store.environment,
        )
        with proxied as workers:
            names = workers.seed(count, sleep=0.01)
            workers.start(2)
            cuts = 0
            while True:
                # Cut at least once, whatever the pace: a fast store may do half the work before the first cut.
                wait_for(lambda: proxy.connections > 0, timeout=30, what="workers to connect")
                cuts += proxy.cut()
                done = len(workers.finished())
                if done >= count or (done >= count // 2 and cuts > 0):
                    break
                wait_for(lambda done=done: len(workers.finished()) > done, timeout=60, what="progress after a cut")
            wait_for(lambda: len(workers.finished()) >= count, timeout=120, what="every instance to run")
            wait_for(lambda: not workers.remaining(), timeout=60, what="every instance committed")
            logs = workers.stop()
    finished = workers.finished()
    assert cuts > 0
    assert set(finished) == set(names), "nothing due was lost"
    if mode == "at_most_once":
        assert max(finished.values()) == 1, "no instance ran twice under AT_MOST_ONCE"
    else:
        # A re-run is legitimate only when the first run's commit was cut; it then comes from a
        # new claim of the instance, so it carries a strictly greater fencing token.
        for instance, events in by_instance(workers.entries()):
            tokens = [event.token for event in events if event.event == "start"]
            assert all(t is not None for t in tokens)
            assert all(a < b for a, b in itertools.pairwise(tokens)), (
                f"{instance}: an older claim started after a newer one: {tokens}"
            )
    assert all(process_log.count("Traceback") == 0 or "BackendError" in process_log for process_log in logs.values())
