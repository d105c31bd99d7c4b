"""Options, start-up validation, secrets and schema handling of the MySQL backend."""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import socket
import ssl
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, AsyncIterator

import aiomysql
import anyio
import pytest

from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.model import Registration, TaskKey, to_micros
from pyncette.mysql import constants, mysql_repository, plugin
from pyncette.mysql.repository import is_encrypted
from pyncette.mysql.schema import create_table_sql
from tests.backends.mysql.conftest import admin_query
from tests.support.startup import assert_one_clean_error, start_app

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECRET = "hunter2-Secret-Passw0rd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def own_pool(mysql_options: dict[str, Any], **kwargs: Any) -> AsyncIterator[Any]:
    pool = await aiomysql.create_pool(
        host=mysql_options["mysql_host"],
        port=mysql_options["mysql_port"],
        user=mysql_options["mysql_user"],
        password=mysql_options["mysql_password"],
        db=mysql_options["mysql_database"],
        **kwargs,
    )
    try:
        yield pool
    finally:
        pool.close()
        await pool.wait_closed()


# plugin


def test_entry_point_and_declared_options() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pyncette")}
    assert names.get("mysql") == "pyncette.mysql.plugin"
    (info,) = plugin.pyncette_backends()
    assert info.name == "mysql"
    assert info.load_factory() is mysql_repository
    assert info.distribution == "pyncette-mysql"
    accepted = {
        name for name, p in inspect.signature(inspect.unwrap(mysql_repository)).parameters.items() if p.kind is p.KEYWORD_ONLY
    }
    assert set(info.options) == accepted
    for legacy in ("mysql_host", "mysql_port", "mysql_user", "mysql_password", "mysql_database", "mysql_table_name"):
        assert legacy in info.options
    assert "mysql_skip_table_create" in info.options


# validation before any connection


@pytest.mark.parametrize("name", ["", "1abc", "bad-name", "a" * 65, "x`; DROP TABLE t; --", "db.table", "naïve"])
async def test_invalid_table_name_is_rejected_before_connecting(name: str) -> None:
    with pytest.raises(ConfigurationError, match="mysql_table_name"):
        async with mysql_repository(
            mysql_host="127.0.0.1", mysql_port=free_port(), mysql_user="u", mysql_database="d", mysql_table_name=name
        ):
            pass


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"mysql_database": "d"}, "mysql_user"),
        ({"mysql_user": "u"}, "mysql_database"),
        ({"mysql_user": "u", "mysql_database": "d", "mysql_port": 0}, "mysql_port"),
        ({"mysql_user": "u", "mysql_database": "d", "mysql_port": "3306"}, "mysql_port"),
        ({"mysql_user": "u", "mysql_database": "d", "mysql_pool_size": 0}, "mysql_pool_size"),
        ({"mysql_user": "u", "mysql_database": "d", "mysql_ssl": "yes"}, "mysql_ssl"),
    ],
)
async def test_bad_options_name_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        async with mysql_repository(mysql_host="127.0.0.1", **options):
            pass


async def test_unreachable_server_is_a_backend_error_naming_host_and_port(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with pytest.raises(BackendError) as info:
        async with mysql_repository(
            mysql_host="127.0.0.1", mysql_port=port, mysql_user="u", mysql_password=SECRET, mysql_database="d"
        ):
            pass
    message = str(info.value)
    assert "mysql_host" in message
    assert f"127.0.0.1:{port}" in message
    assert "Can't connect" in message  # the driver's text, without its exception chained
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert SECRET not in message
    assert SECRET not in caplog.text


async def test_wrong_credentials_name_the_options_and_hide_the_password(
    mysql_options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    options = {**mysql_options, "mysql_user": "pyncette_no_such_user", "mysql_password": SECRET}
    with pytest.raises(ConfigurationError) as info:
        async with mysql_repository(**options):
            pass
    assert "mysql_user" in str(info.value)
    assert "mysql_password" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.__cause__)
    assert SECRET not in caplog.text


async def test_unknown_database_names_the_option(mysql_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="mysql_database"):
        async with mysql_repository(**{**mysql_options, "mysql_database": "pyncette_no_such_database"}):
            pass


async def test_tls_is_used_when_offered_and_never_silently_dropped(mysql_options: dict[str, Any], table_name: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the loopback test server has no certificate we could verify
    if admin_query("SELECT @@have_ssl")[0][0] == "YES":
        async with mysql_repository(**mysql_options, mysql_table_name=table_name, mysql_ssl=context) as repository:
            assert await repository.get_task(TaskKey("t", "x")) is None
            async with repository._pool.acquire() as conn:
                assert is_encrypted(conn)
    else:
        # aiomysql itself would carry on in clear text; the backend refuses instead
        with pytest.raises(ConfigurationError, match="mysql_ssl"):
            async with mysql_repository(**mysql_options, mysql_table_name=table_name, mysql_ssl=context):
                pass


async def test_other_backends_options_are_ignored(mysql_options: dict[str, Any], table_name: str) -> None:
    async with mysql_repository(
        **mysql_options,
        mysql_table_name=table_name,
        redis_url="redis://x",
        postgres_table_name="other",
        concurrency_limit=4,
        batch_size=7,
    ) as repository:
        assert await repository.get_task(TaskKey("t", "x")) is None


# schema


def table_comment(name: str) -> str | None:
    rows = admin_query(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (name,)
    )
    return rows[0][0] if rows else None


async def test_table_is_created_with_its_version(mysql_options: dict[str, Any], table_name: str) -> None:
    async with mysql_repository(**mysql_options, mysql_table_name=table_name):
        pass
    assert table_comment(table_name) == f"{constants.SCHEMA_COMMENT_PREFIX}{constants.SCHEMA_VERSION}"
    indexes = {row[2] for row in admin_query(f"SHOW INDEX FROM `{table_name}`")}
    assert {"PRIMARY", constants.DUE_INDEX} <= indexes


async def test_concurrent_first_start_creates_the_table_once(mysql_options: dict[str, Any], table_name: str) -> None:
    started = 0

    async def start() -> None:
        nonlocal started
        async with mysql_repository(**mysql_options, mysql_table_name=table_name):
            started += 1

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(start)
    assert started == 6
    assert table_comment(table_name) is not None


async def test_skip_table_create_requires_the_table(mysql_options: dict[str, Any], table_name: str) -> None:
    with pytest.raises(ConfigurationError, match="mysql_skip_table_create"):
        async with mysql_repository(**mysql_options, mysql_table_name=table_name, mysql_skip_table_create=True):
            pass
    assert table_comment(table_name) is None
    admin_query(create_table_sql(table_name))
    async with mysql_repository(**mysql_options, mysql_table_name=table_name, mysql_skip_table_create=True) as repository:
        reg = Registration(key=TaskKey("t", "a"), spec="{}", data="{}", next_run=T0)
        assert await repository.register_tasks(T0, [reg]) is not None


async def test_newer_schema_version_is_refused(mysql_options: dict[str, Any], table_name: str) -> None:
    admin_query(create_table_sql(table_name))
    admin_query(f"ALTER TABLE `{table_name}` COMMENT = '{constants.SCHEMA_COMMENT_PREFIX}99'")
    for skip in (False, True):
        with pytest.raises(SchemaVersionError, match="99"):
            async with mysql_repository(**mysql_options, mysql_table_name=table_name, mysql_skip_table_create=skip):
                pass


async def test_foreign_table_is_refused(mysql_options: dict[str, Any], table_name: str) -> None:
    # The shape of a pyncette 1.x table: same default name, another layout, no version marker.
    admin_query(f"CREATE TABLE `{table_name}` (name VARCHAR(256) PRIMARY KEY, task_spec TEXT)")
    with pytest.raises(SchemaVersionError, match="mysql_table_name"):
        async with mysql_repository(**mysql_options, mysql_table_name=table_name):
            pass


# pools, sessions and values


async def test_pool_passed_in_is_used_and_not_closed(mysql_options: dict[str, Any], table_name: str) -> None:
    async with (
        own_pool(mysql_options, maxsize=2, autocommit=False) as pool,
        mysql_repository(mysql_pool=pool, mysql_table_name=table_name) as repository,
    ):
        key = TaskKey("t", "a")
        await repository.register_tasks(T0, [Registration(key=key, spec="{}", data="{}", next_run=T0)])
        result = await repository.claim_due(T0, "t", owner="w", lease_duration=datetime.timedelta(seconds=5), limit=5)
        assert len(result.claimed) == 1
        assert await repository.set_paused(T0, key, True)
        state = await repository.get_task(key)
        assert state is not None
        assert state.paused
        assert (await repository.list_tasks("t", limit=5)).states == (state,)
        assert await repository.unregister_task(T0, key)
        assert not pool.closed
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute("SELECT 1")
            assert await cursor.fetchall() == ((1,),)
        # autocommit=False sessions were left without an open transaction, so none was discarded
        assert pool.size >= 1


async def test_times_are_exact_utc_whatever_the_session_time_zone(mysql_options: dict[str, Any], table_name: str) -> None:
    moment = datetime.datetime(2030, 10, 27, 1, 30, 0, 123457, tzinfo=datetime.timezone(datetime.timedelta(hours=-7)))
    async with (
        own_pool(mysql_options, init_command="SET time_zone = '+05:45'", autocommit=True) as pool,
        mysql_repository(mysql_pool=pool, mysql_table_name=table_name) as repository,
    ):
        key = TaskKey("tz", "a")
        await repository.register_tasks(moment, [Registration(key=key, spec="{}", data="{}", next_run=moment)])
        state = await repository.get_task(key)
    assert state is not None
    assert state.next_run == moment
    assert state.next_run.utcoffset() == datetime.timedelta(0)
    assert admin_query(f"SELECT next_run FROM `{table_name}`") == [(to_micros(moment),)]


async def test_names_compare_exactly_and_list_in_code_point_order(mysql_options: dict[str, Any], table_name: str) -> None:
    names = ["a", "a ", "A", "ä", "b", "\U0001f600" * 512, "z" * 511 + "\U0001f600", ""]
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        regs = [Registration(key=TaskKey("n", name), spec=f'"{i}"', data="{}", next_run=T0) for i, name in enumerate(names)]
        assert len(set(await repository.register_tasks(T0, regs))) == 1
        listed: list[str] = []
        continuation = None
        while True:
            page = await repository.list_tasks("n", limit=3, continuation=continuation)
            listed.extend(state.key.instance for state in page.states)
            if page.continuation is None:
                break
            continuation = page.continuation
        assert listed == sorted(names)
        for i, name in enumerate(names):
            state = await repository.get_task(TaskKey("n", name))
            assert state is not None
            assert state.spec == f'"{i}"'


async def test_scope_longer_than_the_key_allows_is_rejected(mysql_options: dict[str, Any], table_name: str) -> None:
    async with mysql_repository(**mysql_options, mysql_table_name=table_name) as repository:
        with pytest.raises(ConfigurationError, match="1024 bytes"):
            await repository.get_task(TaskKey("x" * 1025, "a"))


def test_a_wrong_password_stops_the_start_with_one_error_line(mysql_options: dict[str, Any], tmp_path: Path) -> None:
    options = {**mysql_options, "mysql_password": SECRET}
    line = assert_one_clean_error(start_app(tmp_path, options), option="mysql_password", secret=SECRET)
    assert "ConfigurationError" in line and "mysql_user" in line
