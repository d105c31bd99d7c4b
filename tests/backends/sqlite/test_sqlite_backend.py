"""SQLite-specific behaviour: options, schema, connection ownership, recovery, busy handling, batching."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import inspect
import logging
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any, AsyncIterator, Callable

import aiosqlite
import anyio
import pytest

from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.model import Completion, RegisterOutcome, Registration, TaskKey
from pyncette.sqlite import SqliteRepository, sqlite_repository
from pyncette.sqlite.constants import META_TABLE_NAME, SCHEMA_VERSION
from pyncette.sqlite.plugin import OPTIONS, pyncette_backends

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)
SECRET = "hunter2-do-not-leak"


def registration(scope: str, name: str, next_run: datetime.datetime = T0) -> Registration:
    return Registration(key=TaskKey(scope, name), spec='{"v": 1}', data="{}", next_run=next_run)


def raw(database: str) -> sqlite3.Connection:
    """A plain sqlite3 connection, in autocommit mode, playing another process."""
    return sqlite3.connect(database, isolation_level=None, timeout=0)


# options and validation


@pytest.mark.parametrize("name", ["bad-name", "1abc", 'x"; DROP TABLE t; --', "", "a" * 64, "sqlite_stat1", META_TABLE_NAME, 7])
async def test_invalid_table_names_are_rejected_before_any_sql(database: str, name: Any) -> None:
    with pytest.raises(ConfigurationError, match="sqlite_table_name"):
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=name):
            pass
    assert not await anyio.Path(database).exists()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sqlite_busy_timeout": -1}, "sqlite_busy_timeout"),
        ({"sqlite_busy_timeout": "5"}, "sqlite_busy_timeout"),
        ({"sqlite_busy_retries": -1}, "sqlite_busy_retries"),
        ({"sqlite_busy_retries": 1.5}, "sqlite_busy_retries"),
        ({"sqlite_synchronous": "FAST"}, "sqlite_synchronous"),
        ({"sqlite_database": 42}, "sqlite_database"),
    ],
)
async def test_invalid_options_name_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        async with sqlite_repository(**options):
            pass


@pytest.mark.parametrize(
    ("wal", "synchronous", "journal", "level"),
    [(False, None, "delete", 2), (True, "NORMAL", "wal", 1), (False, "off", "delete", 0), (True, "EXTRA", "wal", 3)],
)
async def test_journal_and_synchronous_options_take_effect(
    database: str, wal: bool, synchronous: str | None, journal: str, level: int
) -> None:
    """Read back with PRAGMA; without sqlite_synchronous the level is SQLite's default, FULL (2)."""
    async with sqlite_repository(sqlite_database=database, sqlite_wal=wal, sqlite_synchronous=synchronous) as repository:
        connection = repository.connection
        assert connection is not None
        assert [tuple(row) for row in await connection.execute_fetchall("PRAGMA journal_mode")] == [(journal,)]
        assert [tuple(row) for row in await connection.execute_fetchall("PRAGMA synchronous")] == [(level,)]
    reader = raw(database)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone() == (journal,)  # the file keeps its journal mode
    finally:
        reader.close()


async def test_database_and_connection_are_exclusive(database: str) -> None:
    async with aiosqlite.connect(":memory:") as connection:
        with pytest.raises(ConfigurationError, match="sqlite_connection"):
            async with sqlite_repository(sqlite_database=database, sqlite_connection=connection):
                pass


async def test_missing_directory_is_a_configuration_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="sqlite_database"):
        async with sqlite_repository(sqlite_database=str(tmp_path / "nope" / "x.db")):
            pass


async def test_a_file_that_is_not_a_database_fails_at_start(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    with pytest.raises(BackendError, match="sqlite_database") as caught:
        async with sqlite_repository(sqlite_database=str(path)):
            pass
    # The driver's text is in the message; its exception is not chained, so a report is one error.
    assert "file is not a database" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_unknown_and_common_options_are_ignored(database: str) -> None:
    options: dict[str, Any] = {"concurrency_limit": 5, "batch_size": 7, "redis_url": "redis://x"}
    async with sqlite_repository(sqlite_database=database, **options) as repository:
        assert await repository.register_tasks(T0, [registration("s", "a")]) == [RegisterOutcome.CREATED]


async def test_other_backends_secrets_never_appear_in_errors_or_logs(database: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: dict[str, Any] = {"postgres_url": f"postgresql://user:{SECRET}@db/app", "mysql_password": SECRET}
    with pytest.raises(ConfigurationError) as caught:
        async with sqlite_repository(sqlite_database=database, sqlite_table_name="bad-name", **secrets):
            pass
    assert SECRET not in str(caught.value)
    async with sqlite_repository(sqlite_database=database, **secrets) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
        await repository.aclose()
        with pytest.raises(BackendError) as closed:
            await repository.get_task(TaskKey("s", "a"))
    assert SECRET not in str(closed.value)
    assert SECRET not in caplog.text


def test_plugin_declares_every_factory_option() -> None:
    (info,) = pyncette_backends()
    assert (info.name, info.load_factory(), info.distribution) == ("sqlite", sqlite_repository, "pyncette-sqlite")
    parameters = inspect.signature(inspect.unwrap(sqlite_repository)).parameters
    keywords = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords == set(info.options) == set(OPTIONS)
    assert all(description for description in info.options.values())


def test_entry_point_and_public_import() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pyncette")}
    assert points.get("sqlite") == "pyncette.sqlite.plugin"
    from pyncette.sqlite import sqlite_repository as imported

    assert imported is sqlite_repository


# schema


async def test_schema_is_created_with_version_and_due_index(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name):
        pass
    connection = raw(database)
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {table_name, f"{table_name}_due", META_TABLE_NAME} <= names
    version = connection.execute(f"SELECT version FROM {META_TABLE_NAME} WHERE table_name = ?", (table_name,)).fetchone()
    assert version == (SCHEMA_VERSION,)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()


async def test_skip_table_create_refuses_a_missing_table(database: str, table_name: str) -> None:
    with pytest.raises(SchemaVersionError, match=table_name):
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, sqlite_skip_table_create=True):
            pass
    connection = raw(database)
    assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    connection.close()


async def test_skip_table_create_uses_an_existing_schema(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, sqlite_skip_table_create=True) as again:
        assert await again.get_task(TaskKey("s", "a")) is not None


@pytest.mark.parametrize("skip", [False, True])
async def test_newer_schema_version_is_refused(database: str, table_name: str, skip: bool) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name):
        pass
    connection = raw(database)
    connection.execute(f"UPDATE {META_TABLE_NAME} SET version = ? WHERE table_name = ?", (SCHEMA_VERSION + 1, table_name))
    connection.close()
    with pytest.raises(SchemaVersionError, match=rf"{table_name}.*version {SCHEMA_VERSION + 1}.*upgrade pyncette-sqlite"):
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, sqlite_skip_table_create=skip):
            pass


@pytest.mark.parametrize("skip", [False, True])
async def test_older_schema_version_is_refused_and_left_untouched(database: str, table_name: str, skip: bool) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", "kept")])
    connection = raw(database)
    connection.execute(f"UPDATE {META_TABLE_NAME} SET version = ? WHERE table_name = ?", (SCHEMA_VERSION - 1, table_name))
    schema_before = connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    connection.close()
    # No release before version 1 exists, so there is no upgrade: the start is refused, not guessed at.
    with pytest.raises(
        SchemaVersionError, match=rf"{table_name}.*version {SCHEMA_VERSION - 1}.*uses version {SCHEMA_VERSION}.*no upgrade path"
    ):
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, sqlite_skip_table_create=skip):
            pass
    connection = raw(database)
    try:
        assert connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema_before
        assert connection.execute(f"SELECT version FROM {META_TABLE_NAME} WHERE table_name = ?", (table_name,)).fetchone() == (
            SCHEMA_VERSION - 1,
        )
        assert connection.execute(f"SELECT instance FROM {table_name}").fetchall() == [("kept",)]
    finally:
        connection.close()


async def test_start_up_needs_no_write_lock_once_the_schema_exists(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name):
        pass
    holder = raw(database)
    holder.execute("BEGIN IMMEDIATE")
    try:
        options: dict[str, Any] = {"sqlite_busy_timeout": 0, "sqlite_busy_retries": 0}
        async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, **options) as repository:
            assert await repository.get_task(TaskKey("s", "a")) is None
    finally:
        holder.rollback()
        holder.close()


async def test_a_versioned_table_dropped_by_hand_is_rebuilt(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name):
        pass
    connection = raw(database)
    connection.execute(f"DROP TABLE {table_name}")
    connection.close()
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        assert await repository.register_tasks(T0, [registration("s", "a")]) == [RegisterOutcome.CREATED]


async def test_a_table_without_a_version_is_refused_not_misread(database: str) -> None:
    connection = raw(database)
    # The pyncette 1.x layout, under the default table name both versions share.
    connection.execute(
        "CREATE TABLE pyncette_tasks (name PRIMARY KEY, parent_name, locked_until, locked_by, execute_after, task_spec)"
    )
    connection.close()
    with pytest.raises(SchemaVersionError, match=r"pyncette_tasks.*no pyncette schema version"):
        async with sqlite_repository(sqlite_database=database):
            pass


async def test_tables_sharing_a_file_are_independent(database: str) -> None:
    async with (
        sqlite_repository(sqlite_database=database, sqlite_table_name="first") as first,
        sqlite_repository(sqlite_database=database, sqlite_table_name="second") as second,
    ):
        await first.register_tasks(T0, [registration("s", "a")])
        assert await second.get_task(TaskKey("s", "a")) is None
        assert (await second.list_tasks("s", limit=10)).states == ()


async def test_concurrent_first_start_up_creates_the_schema_once(database: str, table_name: str) -> None:
    async with contextlib.AsyncExitStack() as stack:

        async def start() -> None:
            repository = await stack.enter_async_context(
                sqlite_repository(sqlite_database=database, sqlite_table_name=table_name)
            )
            await repository.register_tasks(T0, [registration("s", "a")])

        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(start)
    connection = raw(database)
    assert connection.execute(f"SELECT count(*) FROM {table_name}").fetchone() == (1,)
    connection.close()


# connection ownership and recovery


async def test_a_connection_passed_in_is_used_and_not_closed(database: str, table_name: str) -> None:
    async with (
        aiosqlite.connect(database, isolation_level=None) as connection,
        sqlite_repository(sqlite_connection=connection, sqlite_table_name=table_name) as repository,
    ):
        assert repository.connection is connection
        await repository.register_tasks(T0, [registration("s", "a")])
        rows = list(await connection.execute_fetchall(f"SELECT instance FROM {table_name}"))
        assert [tuple(row) for row in rows] == [("a",)]


async def test_a_connection_the_factory_opened_is_closed(database: str) -> None:
    async with sqlite_repository(sqlite_database=database) as repository:
        connection = repository.connection
        assert connection is not None
    with pytest.raises(ValueError, match=r"no active connection|closed"):
        await connection.execute("SELECT 1")


async def test_a_closed_connection_is_replaced_by_the_next_operation(database: str, caplog: pytest.LogCaptureFixture) -> None:
    async with sqlite_repository(sqlite_database=database) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
        broken = repository.connection
        assert broken is not None
        await broken.close()
        (claimed,) = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)).claimed
        assert repository.connection not in (None, broken)
        assert await repository.complete_tasks(
            T0, [Completion(key=claimed.state.key, lease=claimed.lease, next_run=None, data="")]
        )
    assert "reopening the connection" in caplog.text


async def test_a_lost_in_memory_database_is_an_error_not_an_empty_store() -> None:
    async with sqlite_repository() as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
        assert repository.connection is not None
        await repository.connection.close()
        with pytest.raises(BackendError, match="in-memory"):
            await repository.get_task(TaskKey("s", "a"))


async def test_cancelling_an_operation_leaves_no_open_transaction(database: str, table_name: str) -> None:
    async with (
        aiosqlite.connect(database, isolation_level=None) as connection,
        sqlite_repository(sqlite_connection=connection, sqlite_table_name=table_name) as repository,
    ):
        await repository.register_tasks(T0, [registration("s", f"i{i}") for i in range(20)])
        loop_token = anyio.lowlevel.current_token()
        with anyio.CancelScope() as scope:

            def cancel_on_begin(statement: str) -> None:
                if statement.startswith("BEGIN"):
                    anyio.from_thread.run_sync(scope.cancel, token=loop_token)

            await connection.set_trace_callback(cancel_on_begin)
            await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=20)
        await connection.set_trace_callback(None)  # type: ignore[arg-type]
        assert scope.cancelled_caught
        other = raw(database)
        other.execute("BEGIN IMMEDIATE")  # the write lock is free: the cancelled transaction was rolled back
        other.rollback()
        other.close()
        result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=20)
        assert len(result.claimed) == 20


# busy handling


async def test_a_busy_database_is_retried_then_reported_as_backend_error(database: str, table_name: str) -> None:
    async with sqlite_repository(
        sqlite_database=database, sqlite_table_name=table_name, sqlite_busy_timeout=0, sqlite_busy_retries=2
    ) as repository:
        holder = raw(database)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BackendError, match="busy") as caught:
                await repository.register_tasks(T0, [registration("s", "a")])
        finally:
            holder.rollback()
            holder.close()
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert await repository.register_tasks(T0, [registration("s", "a")]) == [RegisterOutcome.CREATED]


class _ReleaseOnRetry(logging.Handler):
    """Lets the other writer finish as soon as the repository reports that it backs off."""

    def __init__(self, release: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.on_retry = release
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "busy" in record.getMessage():
            self.retries += 1
            self.on_retry()


@contextlib.contextmanager
def _handler(handler: logging.Handler) -> Any:
    logger = logging.getLogger("pyncette.sqlite")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_a_writer_that_finds_the_database_locked_waits_and_succeeds(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name, sqlite_busy_timeout=0) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
        holder = raw(database)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute(f"UPDATE {table_name} SET data = 'other writer'")

        def release() -> None:
            if holder.in_transaction:
                holder.commit()

        with _handler(_ReleaseOnRetry(release)) as handler:
            (claimed,) = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)).claimed
        holder.close()
        assert handler.retries >= 1
        assert claimed.state.data == "other writer"


# batching and cost


@contextlib.asynccontextmanager
async def traced(database: str, table_name: str) -> AsyncIterator[tuple[SqliteRepository, list[str]]]:
    async with (
        aiosqlite.connect(database, isolation_level=None) as connection,
        sqlite_repository(sqlite_connection=connection, sqlite_table_name=table_name) as repository,
    ):
        statements: list[str] = []
        await connection.set_trace_callback(statements.append)
        yield repository, statements


def _kinds(statements: list[str]) -> list[str]:
    return [statement.split()[0].upper() for statement in statements]


async def test_an_idle_poll_is_one_read_and_takes_no_write_lock(database: str, table_name: str) -> None:
    async with traced(database, table_name) as (repository, statements):
        await repository.register_tasks(T0, [registration("s", "future", next_run=T0 + SECOND)])
        statements.clear()
        result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=100)
        assert (result.claimed, result.more, result.next_due) == ((), False, T0 + SECOND)
        assert _kinds(statements) == ["SELECT"]
        statements.clear()
        empty = await repository.claim_due(T0, "nothing-here", owner="w", lease_duration=LEASE, limit=100)
        assert (empty.claimed, empty.next_due) == ((), None)
        assert _kinds(statements) == ["SELECT"]
        # Another process holding the write lock does not delay an idle poll.
        blocker = raw(database)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with anyio.fail_after(5):
                idle = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=100)
            assert idle.next_due == T0 + SECOND
        finally:
            blocker.rollback()
            blocker.close()


async def test_batches_are_one_transaction_each(database: str, table_name: str) -> None:
    async with traced(database, table_name) as (repository, statements):
        await repository.register_tasks(T0, [registration("s", f"i{i:03d}") for i in range(300)])
        kinds = _kinds(statements)
        assert (kinds.count("BEGIN"), kinds.count("COMMIT"), kinds.count("SELECT")) == (1, 1, 1)
        statements.clear()

        result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=100)
        assert len(result.claimed) == 100
        kinds = _kinds(statements)
        # A read finds something due; then one immediate transaction claims it.
        assert [kind for kind in kinds if kind != "UPDATE"] == ["SELECT", "BEGIN", "SELECT", "SELECT", "COMMIT"]
        assert kinds.count("UPDATE") == 100  # one executemany: the trace reports each row's execution
        statements.clear()

        completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data="{}") for c in result.claimed]
        assert await repository.complete_tasks(T0, completions) == [True] * 100
        kinds = _kinds(statements)
        assert (kinds.count("BEGIN"), kinds.count("COMMIT"), kinds.count("SELECT")) == (1, 1, 1)


async def test_claims_follow_eligibility_when_a_lease_outlasted_next_run(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", "expired", T0 - 10 * SECOND)])
        await repository.claim_due(T0, "s", owner="w1", lease_duration=LEASE, limit=1)
        await repository.register_tasks(T0, [registration("s", "plain", T0 + 20 * SECOND)])
        # At T0 + 40 s both are due: "plain" since T0 + 20 s, "expired" since its lease ended at T0 + 30 s.
        first = await repository.claim_due(T0 + 40 * SECOND, "s", owner="w2", lease_duration=LEASE, limit=1)
        assert [c.state.key.instance for c in first.claimed] == ["plain"]
        await repository.register_tasks(T0, [registration("s", "late", T0 + 35 * SECOND)])
        rest = await repository.claim_due(T0 + 40 * SECOND, "s", owner="w2", lease_duration=LEASE, limit=5)
        assert [c.state.key.instance for c in rest.claimed] == ["expired", "late"]


async def _claim_cost(repository: SqliteRepository, connection: aiosqlite.Connection, scope: str) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    await connection.set_progress_handler(count, 1)
    result = await repository.claim_due(T0, scope, owner="w", lease_duration=LEASE, limit=100)
    await connection.set_progress_handler(None, 1)  # type: ignore[arg-type]
    assert len(result.claimed) == 5
    return steps


async def test_a_claim_reads_due_rows_only(database: str, table_name: str) -> None:
    async with (
        aiosqlite.connect(database, isolation_level=None) as connection,
        sqlite_repository(sqlite_connection=connection, sqlite_table_name=table_name) as repository,
    ):
        due = [registration("few", f"due{i}", T0 - SECOND) for i in range(5)]
        await repository.register_tasks(T0, due)
        small = await _claim_cost(repository, connection, "few")

        due = [registration("many", f"due{i}", T0 - SECOND) for i in range(5)]
        future = [registration("many", f"later{i:05d}", T0 + (i + 1) * SECOND) for i in range(20_000)]
        paused = [registration("many", f"paused{i:05d}", T0 - SECOND) for i in range(5_000)]
        running = [registration("many", f"running{i:05d}", T0 - 2 * SECOND) for i in range(2_000)]
        await repository.register_tasks(T0, running)
        await repository.claim_due(T0, "many", owner="other", lease_duration=LEASE, limit=2_000)
        await repository.register_tasks(T0, due + future + paused)
        await connection.execute(f"UPDATE {table_name} SET paused = 1 WHERE instance LIKE 'paused%'")
        large = await _claim_cost(repository, connection, "many")
    # 27,005 more stored rows in scope (future, paused but overdue, overdue but leased) cost next to nothing.
    assert large < small * 1.5 + 200, (small, large)


async def test_claim_query_plan_uses_the_due_index(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        assert repository.connection is not None
        plans = {}
        for name in ("claim_select", "next_due"):
            sql = getattr(repository.statements, name)
            parameters = {"task": "s", "now": 0, "limit": 10}
            if name == "next_due":
                parameters = ("s", 0)  # type: ignore[assignment]
            rows = await repository.connection.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}", parameters)
            plans[name] = " | ".join(str(row[3]) for row in rows)
        for name, plan in plans.items():
            assert f"INDEX {table_name}_due" in plan, (name, plan)
            assert "SCAN" not in plan.replace(f"SCAN {table_name} USING INDEX", ""), (name, plan)
            assert "TEMP B-TREE" not in plan, (name, plan)


# processes


async def test_another_process_sees_what_this_one_committed(database: str, table_name: str) -> None:
    async with sqlite_repository(sqlite_database=database, sqlite_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", f"i{i}") for i in range(10)])
        script = textwrap.dedent(
            f"""
            import anyio, datetime
            from pyncette.sqlite import sqlite_repository
            T0 = datetime.datetime.fromisoformat({T0.isoformat()!r})
            async def main():
                async with sqlite_repository(sqlite_database={database!r}, sqlite_table_name={table_name!r}) as repo:
                    result = await repo.claim_due(T0, "s", owner="child", lease_duration=datetime.timedelta(seconds=30), limit=4)
                    print(len(result.claimed))
            anyio.run(main)
            """
        )
        child = await anyio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "4"
        page = await repository.list_tasks("s", limit=20)
        assert sorted(s.locked_by or "" for s in page.states) == [""] * 6 + ["child"] * 4
        assert len((await repository.claim_due(T0, "s", owner="parent", lease_duration=LEASE, limit=20)).claimed) == 6


def test_error_classification_without_result_codes() -> None:
    """Python 3.10's sqlite3 errors carry no result code; the message decides."""
    from pyncette.sqlite.repository import _is_broken, _is_busy

    assert _is_busy(sqlite3.OperationalError("database is locked"))
    assert _is_busy(sqlite3.OperationalError("database table is locked: t"))
    assert not _is_busy(sqlite3.OperationalError("no such table: t"))
    assert not _is_busy(ValueError("Connection closed"))
    assert _is_broken(ValueError("Connection closed"))
    assert _is_broken(sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert _is_broken(sqlite3.OperationalError("disk I/O error"))
    assert not _is_broken(sqlite3.OperationalError("no such table: t"))
