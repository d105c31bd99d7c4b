"""The least-privilege set-up of docs/backends/mysql.md, on a private server (users and grants are server-wide)."""

from __future__ import annotations

import datetime
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pytest

from pyncette.errors import ConfigurationError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.mysql import mysql_repository
from pyncette.mysql.schema import create_table_sql
from tests.backends.mysql.conftest import PrivateServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
LEASE = datetime.timedelta(seconds=30)
PASSWORD = "app-Secret-Pa55"
HOSTS = ("'%'", "'localhost'", "'127.0.0.1'")


def as_root(port: int, *statements: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", database="pyncette", autocommit=True)
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


async def test_row_privileges_on_a_pre_created_table_are_enough(private_server: PrivateServer) -> None:
    users = ", ".join(f"'pyncette_app'@{host}" for host in HOSTS)
    as_root(
        private_server.port,
        "DROP TABLE IF EXISTS lp_tasks",
        create_table_sql("lp_tasks"),
        f"DROP USER IF EXISTS {users}",
        *(f"CREATE USER 'pyncette_app'@{host} IDENTIFIED BY '{PASSWORD}'" for host in HOSTS),
        *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON pyncette.lp_tasks TO 'pyncette_app'@{host}" for host in HOSTS),
    )
    options: dict[str, Any] = {
        "mysql_host": "127.0.0.1",
        "mysql_port": private_server.port,
        "mysql_user": "pyncette_app",
        "mysql_password": PASSWORD,
        "mysql_database": "pyncette",
        "mysql_table_name": "lp_tasks",
    }
    for skip in (True, False):
        async with mysql_repository(**options, mysql_skip_table_create=skip) as repository:
            key = TaskKey("lp", f"skip-{skip}")
            await repository.register_tasks(T0, [Registration(key=key, spec="{}", data="{}", next_run=T0)])
            (claimed,) = (await repository.claim_due(T0, "lp", owner="w", lease_duration=LEASE, limit=10)).claimed
            assert await repository.extend_lease(T0, key, claimed.lease, LEASE) is not None
            assert await repository.set_paused(T0, key, True)
            done = Completion(key=key, lease=claimed.lease, next_run=T0 + LEASE, data="{}")
            assert await repository.complete_tasks(T0, [done]) == [True]
            assert [s.key for s in (await repository.list_tasks("lp", limit=10)).states] == [key]
            assert await repository.unregister_task(T0, key)

    with pytest.raises(ConfigurationError, match="mysql_skip_table_create") as info:
        async with mysql_repository(**{**options, "mysql_table_name": "lp_not_granted"}):
            pass
    assert PASSWORD not in str(info.value)
    as_root(private_server.port, f"DROP USER {users}", "DROP TABLE lp_tasks")
