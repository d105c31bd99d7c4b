"""Faults a database file meets: another writer holding the lock for long, workers killed mid-drain.

SQLite has no connection to cut; its outages are a write lock held by someone else (a backup, a
migration, a stuck process) and processes dying inside a transaction. Workers must log, back off
and carry on, losing nothing that was committed or due.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.support.multiprocess import WorkerPool, wait_for

pytestmark = pytest.mark.multiprocess

OUTAGE = 1.5
"""Seconds the outside writer holds the lock: several busy timeouts and retry budgets of the workers."""


def _more_than(workers: WorkerPool, done: int) -> Callable[[], bool]:
    return lambda: len(workers.finished()) > done


def _pool(tmp_path: Path, mode: str, **options: object) -> WorkerPool:
    """Workers on one file, paced (10 executions at a time each) so that a fault meets work still to do."""
    database = str(tmp_path / "shared.db")
    return WorkerPool(
        "sqlite", {"sqlite_database": database, **options}, tmp_path / "ledger", mode=mode, lease=5, concurrency_limit=10
    )


@pytest.mark.parametrize("mode", ["at_most_once", "at_least_once"])
def test_workers_ride_out_a_writer_holding_the_lock(tmp_path: Path, mode: str) -> None:
    count = 600
    # Short waits so that the outage exhausts the retries and reaches the scheduler as BackendError.
    with _pool(tmp_path, mode, sqlite_busy_timeout=0.1, sqlite_busy_retries=2) as workers:
        names = workers.seed(count, sleep=0.1)  # at least 3 s of work for 2 workers
        workers.start(2)
        outages = 0
        while len(workers.finished()) < count // 2:
            wait_for(lambda: len(workers.finished()) > 0, timeout=60, what="workers to start executing")
            blocker = sqlite3.connect(str(tmp_path / "shared.db"), isolation_level=None, timeout=30)
            blocker.execute("BEGIN IMMEDIATE")
            time.sleep(OUTAGE)  # the fault itself: the lock stays taken this long
            blocker.rollback()
            blocker.close()
            outages += 1
            done = len(workers.finished())
            assert done < count, "the outage came after the work was done: it proves nothing"
            wait_for(_more_than(workers, done), timeout=60, what="progress after the outage")
        wait_for(lambda: len(workers.finished()) >= count, timeout=120, what="every instance to run")
        wait_for(lambda: not workers.remaining(), timeout=60, what="every instance committed")
        logs = workers.stop()
    finished = workers.finished()
    assert outages > 0
    assert set(finished) == set(names), "nothing due was lost"
    if mode == "at_most_once":
        assert max(finished.values()) == 1, "no instance ran twice under AT_MOST_ONCE"
    else:
        reruns = collections.Counter(finished.values())
        assert reruns[1] >= count - 100, f"re-runs only where a commit failed during an outage: {reruns}"
    assert len(logs) == 2, "no worker died"
    assert any("gave up after" in log for log in logs.values()), "the outage reached the scheduler as BackendError"
    for log in logs.values():
        assert "Traceback" not in log, log[-3000:]
        # "database is locked" reaches the scheduler only inside a BackendError, after bounded retries.
        assert all("gave up after" in line for line in log.splitlines() if "locked" in line), log[-3000:]


def test_workers_killed_mid_drain_leave_a_sound_database(tmp_path: Path) -> None:
    count = 1_000
    with _pool(tmp_path, "at_least_once") as workers:
        workers.lease = 3
        names = workers.seed(count, sleep=0.02)  # about 1 s of work for 2 workers, 2 s for one
        victims = workers.start(2)
        for victim in victims:
            done = len(workers.finished())
            assert done < count, "the workers finished before they were killed: the kill proves nothing"
            wait_for(_more_than(workers, done), timeout=60, what="the victims to make progress")
            workers.kill(victim)  # often inside a claim or commit: a draining worker does little else
        workers.start(1)
        wait_for(lambda: len(workers.finished()) >= count, timeout=120, what="every instance to run")
        wait_for(lambda: not workers.remaining(), timeout=60, what="every instance committed")
        workers.stop()
    assert set(workers.finished()) == set(names), "nothing due was lost"
    check = sqlite3.connect(str(tmp_path / "shared.db"))
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()
