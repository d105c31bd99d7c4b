"""Round trips, index use, lock-wait retries and dropped connections of the MySQL backend."""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import threading
from typing import Any

import aiomysql
import anyio
import pymysql  # type: ignore[import-untyped]
import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, RegisterOutcome, Registration, TaskKey
from pyncette.mysql import MySQLRepository, mysql_repository
from tests.backends.mysql.conftest import HOST, PORT, admin_connection
from tests.backends.mysql.test_mysql_options import own_pool
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def reg(task: str, name: str, next_run: datetime.datetime = T0, spec: str = "{}") -> Registration:
    return Registration(key=TaskKey(task, name), spec=spec, data="{}", next_run=next_run)


class RoundTrips:
    """Counts what the client sends: one ``execute`` is one round trip, however many statements it holds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.queries: list[str] = []
        original = aiomysql.Cursor.execute

        async def execute(cursor: Any, query: str, args: Any = None) -> Any:
            self.queries.append(query)
            return await original(cursor, query, args)

        monkeypatch.setattr(aiomysql.Cursor, "execute", execute)

    def reset(self) -> None:
        self.queries.clear()

    def statements(self, verb: str) -> int:
        return sum(query.count(verb) for query in self.queries)


async def test_batches_take_a_fixed_number_of_round_trips(
    mysql_options: dict[str, Any], table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        trips = RoundTrips(monkeypatch)
        outcomes = await repository.register_tasks(T0, [reg("b", f"i{i:03d}") for i in range(300)])
        assert len(outcomes) == 300
        assert len(trips.queries) == 2
        assert trips.statements("INSERT INTO") == 1

        trips.reset()
        await repository.register_tasks(T0, [reg("b", f"i{i:03d}", spec='{"v": 2}') for i in range(100)])
        assert len(trips.queries) == 2
        assert trips.statements("UPDATE `") == 100

        trips.reset()
        claimed = (await repository.claim_due(T0, "b", owner="w", lease_duration=LEASE, limit=200)).claimed
        assert len(claimed) == 200
        assert len(trips.queries) == 2
        assert trips.statements("UPDATE `") == 1

        trips.reset()
        completions = [
            Completion(key=c.state.key, lease=c.lease, next_run=None if i % 2 else T0 + SECOND, data="{}")
            for i, c in enumerate(claimed)
        ]
        assert await repository.complete_tasks(T0, completions) == [True] * 200
        assert len(trips.queries) == 2
        assert trips.statements("DELETE FROM") == 1


async def test_claim_reads_due_rows_only(mysql_options: dict[str, Any], table_name: str) -> None:
    """With thousands of rows stored and few due, a claim touches about as many index entries as it claims."""
    async with (
        own_pool(mysql_options, minsize=1, maxsize=1, autocommit=True) as pool,
        mysql_repository(mysql_pool=pool, mysql_table_name=table_name) as repository,
    ):
        await repository.register_tasks(T0, [reg("big", f"f{i:05d}", T0 + (i + 1) * SECOND) for i in range(3000)])
        await repository.register_tasks(T0, [reg("big", f"d{i}", T0 - i * SECOND) for i in range(5)])

        async def rows_read() -> int:
            async with pool.acquire() as conn, conn.cursor() as cursor:
                await cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
                return sum(int(value) for _, value in await cursor.fetchall())

        before = await rows_read()
        result = await repository.claim_due(T0, "big", owner="w", lease_duration=LEASE, limit=100)
        read = await rows_read() - before
        assert len(result.claimed) == 5
        assert result.next_due == T0 + SECOND
        assert read < 100, f"a claim read {read} rows for 5 due among 3005"


async def test_lock_wait_timeout_is_retried_not_surfaced(
    mysql_options: dict[str, Any], table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    retried = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retried.set()

    handler = Signal()
    logging.getLogger("pyncette.mysql").addHandler(handler)
    try:
        async with (
            own_pool(mysql_options, init_command="SET SESSION innodb_lock_wait_timeout = 1", autocommit=True) as pool,
            mysql_repository(mysql_pool=pool, mysql_table_name=table_name) as repository,
        ):
            key = TaskKey("lw", "a")
            await repository.register_tasks(T0, [reg("lw", "a")])
            (claimed,) = (await repository.claim_due(T0, "lw", owner="w", lease_duration=LEASE, limit=1)).claimed
            with admin_connection() as blocker:
                blocker.autocommit(False)
                with blocker.cursor() as cursor:
                    cursor.execute(f"SELECT * FROM `{table_name}` FOR UPDATE")

                async def release_after_first_retry() -> None:
                    await anyio.to_thread.run_sync(retried.wait, 30)
                    blocker.rollback()

                async with anyio.create_task_group() as group:
                    group.start_soon(release_after_first_retry)
                    completion = Completion(key=key, lease=claimed.lease, next_run=T0 + SECOND, data='{"ok": 1}')
                    applied = await repository.complete_tasks(T0, [completion])
            assert applied == [True]
            assert "1205" in caplog.text
            state = await repository.get_task(key)
            assert state is not None
            assert state.data == '{"ok": 1}'
    finally:
        logging.getLogger("pyncette.mysql").removeHandler(handler)


async def test_every_operation_recovers_after_connections_are_cut(table_name: str, mysql_options: dict[str, Any]) -> None:
    with TcpProxy(HOST, PORT) as proxy:
        options = {**mysql_options, "mysql_port": proxy.port, "mysql_pool_size": 3}
        async with mysql_repository(**options, mysql_table_name=table_name) as repository:
            await repository.register_tasks(T0, [reg("cut", f"i{i}") for i in range(5)])
            key = TaskKey("cut", "i0")

            async def cut_then(operation: Any) -> Any:
                assert proxy.cut() >= 1
                return await operation

            (claimed,) = (await cut_then(repository.claim_due(T0, "cut", owner="w", lease_duration=LEASE, limit=1))).claimed
            assert claimed.state.key == key
            assert await cut_then(repository.extend_lease(T0, key, claimed.lease, LEASE)) is not None
            completion = Completion(key=key, lease=claimed.lease, next_run=T0 + SECOND, data="{}")
            assert await cut_then(repository.complete_tasks(T0, [completion])) == [True]
            assert await cut_then(repository.register_tasks(T0, [reg("cut", "new")])) is not None
            assert await cut_then(repository.set_paused(T0, key, True))
            assert (await cut_then(repository.get_task(key))).paused
            assert len((await cut_then(repository.list_tasks("cut", limit=10))).states) == 6
            assert await cut_then(repository.unregister_task(T0, key))
            assert proxy.connections > 1


async def test_unreachable_store_is_a_backend_error_then_recovers(table_name: str, mysql_options: dict[str, Any]) -> None:
    with TcpProxy(HOST, PORT) as proxy:
        options = {**mysql_options, "mysql_port": proxy.port}
        async with mysql_repository(**options, mysql_table_name=table_name) as repository:
            await repository.register_tasks(T0, [reg("down", "a")])
            proxy.down("refuse")
            with pytest.raises(BackendError) as info:
                await repository.claim_due(T0, "down", owner="w", lease_duration=LEASE, limit=1)
            assert info.value.__cause__ is not None
            assert "claim_due" in str(info.value)
            proxy.up()
            result = await repository.claim_due(T0, "down", owner="w", lease_duration=LEASE, limit=1)
            assert len(result.claimed) == 1


async def test_cancelled_operation_does_not_poison_the_pool(mysql_options: dict[str, Any], table_name: str) -> None:
    async with (
        own_pool(mysql_options, minsize=1, maxsize=1, autocommit=True) as pool,
        mysql_repository(mysql_pool=pool, mysql_table_name=table_name) as repository,
    ):
        await repository.register_tasks(T0, [reg("c", f"i{i}") for i in range(50)])
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(repository.claim_due, T0, "c", owner="w", lease_duration=LEASE, limit=50))
            # cancel while the claim waits for the server's reply, with its results unread
            await anyio.wait_all_tasks_blocked()
            group.cancel_scope.cancel()
        # The server may have committed the cancelled claim before the cancel arrived, so claim once
        # its lease would have run out: the pool works, and every instance is claimable either way.
        result = await repository.claim_due(T0 + LEASE, "c", owner="w", lease_duration=LEASE, limit=50)
        assert len(result.claimed) == 50


async def test_concurrent_first_registrations_create_each_instance_once(mysql_options: dict[str, Any], table_name: str) -> None:
    names = [f"i{i:03d}" for i in range(60)]
    outcomes: list[RegisterOutcome] = []
    async with contextlib.AsyncExitStack() as stack:
        repos = [
            await stack.enter_async_context(mysql_repository(**mysql_options, mysql_table_name=table_name)) for _ in range(4)
        ]

        async def register(index: int) -> None:
            order = names if index % 2 else names[::-1]
            outcomes.extend(await repos[index].register_tasks(T0, [reg("race", name) for name in order]))

        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(register, index)
    assert outcomes.count(RegisterOutcome.CREATED) == len(names)
    assert outcomes.count(RegisterOutcome.UPDATED) == 3 * len(names)


class LoseReplies:
    """Makes the next script containing ``marker`` fail as a dropped connection would.

    ``after=True`` runs the script first (the server committed, the reply was lost);
    ``after=False`` fails before sending it (nothing reached the server).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, marker: str, *, after: bool) -> None:
        self.pending = 1
        original = MySQLRepository._script

        async def script(conn: Any, sql: str, args: Any = ()) -> Any:
            if self.pending and marker in sql:
                self.pending -= 1
                if after:
                    await original(conn, sql, args)
                raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
            return await original(conn, sql, args)

        monkeypatch.setattr(MySQLRepository, "_script", staticmethod(script))


@pytest.mark.parametrize("after", [True, False], ids=["reply-lost", "request-lost"])
async def test_lost_commit_replies_are_resolved_not_guessed(
    mysql_options: dict[str, Any], table_name: str, monkeypatch: pytest.MonkeyPatch, after: bool
) -> None:
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        LoseReplies(monkeypatch, "INSERT INTO", after=after)
        outcomes = await repository.register_tasks(T0, [reg("lost", f"i{i}") for i in range(4)])
        assert outcomes == [RegisterOutcome.CREATED] * 4

        LoseReplies(monkeypatch, "SET locked_by", after=after)
        result = await repository.claim_due(T0, "lost", owner="w", lease_duration=LEASE, limit=3)
        assert [c.state.key.instance for c in result.claimed] == ["i0", "i1", "i2"]
        for claimed in result.claimed:
            assert await repository.get_task(claimed.state.key) == claimed.state

        LoseReplies(monkeypatch, "DELETE FROM", after=after)
        completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in result.claimed[:2]]
        completions.append(
            Completion(key=result.claimed[2].state.key, lease=result.claimed[2].lease, next_run=T0 + SECOND, data="{}")
        )
        assert await repository.complete_tasks(T0, completions) == [True, True, True]
        assert [s.key.instance for s in (await repository.list_tasks("lost", limit=10)).states] == ["i2", "i3"]
        state = await repository.get_task(TaskKey("lost", "i2"))
        assert state is not None
        assert state.locked_by is None
        assert state.next_run == T0 + SECOND
