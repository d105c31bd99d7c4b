"""A private MariaDB/MySQL server (see ``private_server`` in conftest) crashes and restarts under the backend."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.mysql import mysql_repository
from tests.backends.mysql.conftest import PrivateServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


async def test_work_resumes_after_the_server_crashes_and_restarts(private_server: PrivateServer) -> None:
    options: dict[str, Any] = {
        "mysql_host": "127.0.0.1",
        "mysql_port": private_server.port,
        "mysql_user": "root",
        "mysql_database": "pyncette",
        "mysql_table_name": "restart_test",
        "mysql_pool_size": 3,
    }
    async with mysql_repository(**options) as repository:
        await repository.register_tasks(
            T0, [Registration(key=TaskKey("r", f"i{i}"), spec="{}", data="{}", next_run=T0) for i in range(10)]
        )
        first = (await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=4)).claimed
        done = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + 60 * SECOND, data='{"ran": 1}') for c in first]
        assert await repository.complete_tasks(T0, done) == [True] * 4

        private_server.crash()
        with pytest.raises(BackendError):
            await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=10)
        private_server.start()

        # the same repository and pool carry on: committed work survived, due work is still due
        rest = (await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=10)).claimed
        assert sorted(c.state.key.instance for c in rest) == [f"i{i}" for i in range(4, 10)]
        for claimed in first:
            state = await repository.get_task(claimed.state.key)
            assert state is not None
            assert (state.next_run, state.data, state.locked_by) == (T0 + 60 * SECOND, '{"ran": 1}', None)
        done = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in rest]
        assert await repository.complete_tasks(T0, done) == [True] * 6
        assert len((await repository.list_tasks("r", limit=100)).states) == 4
