"""Transactions of the MySQL backend: their isolation level, deadlock retries, and the pool they run on."""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any, Callable, Iterator

import anyio
import pymysql  # type: ignore[import-untyped]
import pytest

from pyncette import Pyncette
from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.mysql import MySQLRepository, constants, mysql_repository
from pyncette.mysql import repository as repository_module
from tests.backends.mysql.conftest import admin_connection, admin_query

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def reg(task: str, name: str, next_run: datetime.datetime = T0) -> Registration:
    return Registration(key=TaskKey(task, name), spec="{}", data="{}", next_run=next_run)


class IsolationProbe:
    """Tells the isolation level of a connection's open transaction by what it reads.

    Inside the transaction it reads a counter, another session increments and commits it, and the
    transaction reads it again: READ COMMITTED sees the new value, REPEATABLE READ keeps its snapshot.
    (``@@tx_isolation`` shows the session default, not what ``SET TRANSACTION`` gave the transaction
    under way, and ``information_schema.innodb_trx`` is a cache refreshed at most every 0.1 s.)
    """

    def __init__(self, table_name: str) -> None:
        self.table = f"`{table_name}_probe`"
        admin_query(f"CREATE TABLE {self.table} (k INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        admin_query(f"INSERT INTO {self.table} VALUES (1, 0)")

    def drop(self) -> None:
        admin_query(f"DROP TABLE IF EXISTS {self.table}")

    def _bump(self) -> None:
        admin_query(f"UPDATE {self.table} SET v = v + 1 WHERE k = 1")

    async def level_of(self, conn: Any) -> str:
        """The level of the transaction open on an aiomysql connection."""

        async def read() -> int:
            async with conn.cursor() as cursor:
                await cursor.execute(f"SELECT v FROM {self.table} WHERE k = 1")
                ((value,),) = await cursor.fetchall()
                return int(value)

        before = await read()
        await anyio.to_thread.run_sync(self._bump)
        return "READ COMMITTED" if await read() == before + 1 else "REPEATABLE READ"

    def level_of_blocking(self, conn: Any) -> str:
        """The same for a pymysql connection."""
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT v FROM {self.table} WHERE k = 1")
            ((before,),) = cursor.fetchall()
            self._bump()
            cursor.execute(f"SELECT v FROM {self.table} WHERE k = 1")
            ((after,),) = cursor.fetchall()
        return "READ COMMITTED" if after == before + 1 else "REPEATABLE READ"


@pytest.fixture
def probe(mysql_options: dict[str, Any], table_name: str) -> Iterator[IsolationProbe]:
    instance = IsolationProbe(table_name)
    try:
        yield instance
    finally:
        instance.drop()


async def test_transactions_run_at_read_committed_although_the_server_default_is_repeatable_read(
    mysql_options: dict[str, Any], table_name: str, probe: IsolationProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The premise: a transaction that does not ask otherwise is REPEATABLE READ on this server.
    assert admin_query("SELECT @@global.tx_isolation")[0][0] == "REPEATABLE-READ"
    with admin_connection() as conn:
        conn.begin()
        assert probe.level_of_blocking(conn) == "REPEATABLE READ"
        conn.rollback()

    levels: list[tuple[str, str]] = []
    original = MySQLRepository._script

    async def script(conn: Any, sql: str, args: Any = ()) -> Any:
        results = await original(conn, sql, args)
        if "START TRANSACTION" in sql and not sql.rstrip().endswith("COMMIT"):
            # The backend's transaction is open on this connection: probe it before it goes on.
            levels.append((sql.split(";")[2].split()[0], await probe.level_of(conn)))
        return results

    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        monkeypatch.setattr(MySQLRepository, "_script", staticmethod(script))
        await repository.register_tasks(T0, [reg("iso", "a"), reg("iso", "b")])
        claimed = (await repository.claim_due(T0, "iso", owner="w", lease_duration=LEASE, limit=2)).claimed
        assert len(claimed) == 2
        completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, completions) == [True, True]
    # Registration, claim and completion each open one transaction; every one is READ COMMITTED.
    assert levels == [("SELECT", "READ COMMITTED")] * 3


class RetryLog(logging.Handler):
    """Collects the backend's retry warnings and signals the first one to another thread."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and "retrying" in record.getMessage():
            self.messages.append(record.getMessage())
            self.first.set()


class RecordingSleep:
    """Stands in for the repository module's ``anyio``, recording the back-off of every retry."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(anyio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.sleep(delay)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a blocking ``condition`` until it holds; fail after 30 s naming ``what``."""
    with anyio.move_on_after(30):
        while not await anyio.to_thread.run_sync(condition):
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


def waiting_on(table_name: str, other_than: int) -> bool:
    """Whether a session other than ``other_than`` is waiting for a row lock in ``table_name``."""
    rows = admin_query(
        "SELECT COUNT(*) FROM information_schema.innodb_trx "
        "WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> %s AND trx_query LIKE %s",
        (other_than, f"%`{table_name}`%"),
    )
    return int(rows[0][0]) > 0


async def test_a_real_deadlock_in_a_completion_is_retried_and_never_reaches_the_caller(
    mysql_options: dict[str, Any], table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RetryLog()
    sleeps = RecordingSleep()
    monkeypatch.setattr(repository_module, "anyio", sleeps)
    logging.getLogger("pyncette.mysql").addHandler(log)
    try:
        async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
            await repository.register_tasks(T0, [reg("dl", "a"), reg("dl", "b")])
            claimed = (await repository.claim_due(T0, "dl", owner="w", lease_duration=LEASE, limit=2)).claimed
            completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data='{"done": 1}') for c in claimed]
            applied: list[bool] = []

            with admin_connection() as other:
                other.autocommit(False)
                other_id = other.thread_id()
                cursor = other.cursor()
                # Many changed rows make the other session the heavier transaction, so InnoDB picks the
                # backend's as the deadlock victim.
                cursor.executemany(
                    f"INSERT INTO `{table_name}` (task, instance, spec, data, next_run) VALUES ('heavy', %s, '{{}}', '{{}}', 0)",
                    [(f"h{i}",) for i in range(500)],
                )
                cursor.execute(f"SELECT instance FROM `{table_name}` WHERE task = 'dl' AND instance = 'b' FOR UPDATE")

                async def complete() -> None:
                    applied.extend(await repository.complete_tasks(T0, completions))

                async with anyio.create_task_group() as group:
                    group.start_soon(complete)
                    # The completion locks its rows in key order: it holds a and waits for b.
                    await wait_until(lambda: waiting_on(table_name, other_id), "the completion to wait for b")
                    # Asking for a closes the cycle; InnoDB rolls the completion back and grants a here.
                    await anyio.to_thread.run_sync(
                        cursor.execute, f"SELECT instance FROM `{table_name}` WHERE task = 'dl' AND instance = 'a' FOR UPDATE"
                    )
                    await anyio.to_thread.run_sync(log.first.wait, 30)
                    other.rollback()
    finally:
        logging.getLogger("pyncette.mysql").removeHandler(log)

    assert applied == [True, True]
    assert len(log.messages) == 1
    assert f"{constants.ER_LOCK_DEADLOCK}: Deadlock found" in log.messages[0]
    assert "complete_tasks" in log.messages[0]
    (delay,) = sleeps.delays
    assert constants.RETRY_BASE_DELAY / 2 <= delay <= constants.RETRY_BASE_DELAY
    released = f"SELECT instance FROM `{table_name}` WHERE task = 'dl' AND locked_by IS NULL AND data = %s ORDER BY instance"
    assert admin_query(released, ('{"done": 1}',)) == [(b"a",), (b"b",)]


async def test_deadlocks_back_off_exponentially_then_give_up_as_backend_error(
    mysql_options: dict[str, Any], table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected at the boundary where the server's error arrives: the claim's locking script fails every time."""
    sleeps = RecordingSleep()
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        await repository.register_tasks(T0, [reg("inj", "a")])
        monkeypatch.setattr(repository_module, "anyio", sleeps)
        original = MySQLRepository._script
        attempts = 0

        async def script(conn: Any, sql: str, args: Any = ()) -> Any:
            nonlocal attempts
            if "SKIP LOCKED" in sql:
                attempts += 1
                await original(conn, sql, args)  # the server locked the rows, then chose this transaction as victim
                raise pymysql.err.OperationalError(constants.ER_LOCK_DEADLOCK, "Deadlock found when trying to get lock")
            return await original(conn, sql, args)

        monkeypatch.setattr(MySQLRepository, "_script", staticmethod(script))
        with pytest.raises(BackendError, match="claim_due failed: 1213"):
            await repository.claim_due(T0, "inj", owner="w", lease_duration=LEASE, limit=1)
        monkeypatch.setattr(MySQLRepository, "_script", staticmethod(original))
        assert attempts == constants.RETRY_ATTEMPTS
        # Full jitter between half and all of a delay that doubles per attempt, up to the cap.
        assert len(sleeps.delays) == constants.RETRY_ATTEMPTS - 1
        for number, delay in enumerate(sleeps.delays):
            ceiling = min(constants.RETRY_BASE_DELAY * 2**number, constants.RETRY_MAX_DELAY)
            assert ceiling / 2 <= delay <= ceiling
        # Each failed try was rolled back: the instance was never claimed and is claimable now.
        result = await repository.claim_due(T0, "inj", owner="w", lease_duration=LEASE, limit=1)
        assert [c.state.key.instance for c in result.claimed] == ["a"]
        assert result.claimed[0].lease.token == result.claimed[0].state.fencing_token


@pytest.mark.parametrize(
    ("concurrency_limit", "pool_size", "expected"),
    [
        (1, None, 3),  # concurrency_limit plus the poll loop and a registration
        (7, None, 9),
        (100, None, constants.MAX_DEFAULT_POOL_SIZE),  # capped at 32
        (100, 33, 33),  # an explicit size is used as given, above the cap too
        (7, 1, 1),
    ],
)
async def test_pool_size_follows_concurrency_limit_unless_given(
    mysql_options: dict[str, Any], table_name: str, concurrency_limit: int, pool_size: int | None, expected: int
) -> None:
    options: dict[str, Any] = {} if pool_size is None else {"mysql_pool_size": pool_size}
    app = Pyncette(
        backend="mysql",
        **mysql_options,
        mysql_table_name=table_name,
        concurrency_limit=concurrency_limit,
        configure_signals=False,
        **options,
    )
    async with app.create() as context:
        pool = context.repository._pool
        assert pool.maxsize == expected
        held = [await pool.acquire() for _ in range(expected)]
        try:
            with pytest.raises(TimeoutError), anyio.fail_after(0.2):
                await pool.acquire()
        finally:
            for conn in held:
                pool.release(conn)


async def test_pool_size_without_concurrency_limit(mysql_options: dict[str, Any], table_name: str) -> None:
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        assert repository._pool.maxsize == 10
