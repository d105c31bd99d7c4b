"""Several processes claiming from one database file: every instance is claimed exactly once.

This exercises the repository alone (WAL, BEGIN IMMEDIATE, busy retries across processes); the
scheduler-level multi-process tests use the shared harness.
"""

from __future__ import annotations

import collections
import datetime
import subprocess
import sys
import textwrap

import anyio
import pytest

from pyncette.model import Registration, TaskKey
from pyncette.sqlite import sqlite_repository

pytestmark = [pytest.mark.anyio, pytest.mark.multiprocess]

T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.timezone.utc)
SECOND = datetime.timedelta(seconds=1)

WORKER = textwrap.dedent(
    """
    import datetime, sys
    import anyio
    from pyncette.model import Completion
    from pyncette.sqlite import sqlite_repository

    database, table, owner, now = sys.argv[1], sys.argv[2], sys.argv[3], datetime.datetime.fromisoformat(sys.argv[4])

    async def main():
        # A short busy timeout makes the back-off-and-retry path carry most of the contention.
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=table, sqlite_busy_timeout=0.01) as repo:
            while True:
                result = await repo.claim_due(now, "drain", owner=owner, lease_duration=datetime.timedelta(minutes=5), limit=25)
                if not result.claimed:
                    return
                completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="") for c in result.claimed]
                applied = await repo.complete_tasks(now, completions)
                for claimed, ok in zip(result.claimed, applied):
                    print(claimed.state.key.instance, ok, flush=False)

    anyio.run(main)
    """
)


async def test_three_processes_drain_2000_instances_exactly_once(database: str, table_name: str) -> None:
    count = 2000
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        registrations = [
            Registration(key=TaskKey("drain", f"i{i:05d}"), spec="{}", data="{}", next_run=T0 - i % 60 * SECOND)
            for i in range(count)
        ]
        await repository.register_tasks(T0, registrations)

        def run_workers() -> list[subprocess.CompletedProcess[str]]:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, database, table_name, f"w{n}", T0.isoformat()],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for n in range(3)
            ]
            results = []
            for process in processes:
                stdout, stderr = process.communicate(timeout=300)
                results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
            return results

        results = await anyio.to_thread.run_sync(run_workers)
        for result in results:
            assert result.returncode == 0, result.stderr
            assert "locked" not in result.stderr
        claims = collections.Counter(line.split()[0] for result in results for line in result.stdout.splitlines())
        applied = [line.split()[1] for result in results for line in result.stdout.splitlines()]
        assert len(claims) == count
        assert set(claims.values()) == {1}
        assert set(applied) == {"True"}
        assert (await repository.list_tasks("drain", limit=10)).states == ()
