from __future__ import annotations

import contextlib
import uuid
from typing import Any, Iterator

import pymysql  # type: ignore[import-untyped]
import pytest

from tests.support.servers import MYSQL, require_server

HOST = str(MYSQL["host"])
PORT = int(str(MYSQL["port"]))


@contextlib.contextmanager
def admin_connection(**overrides: Any) -> Iterator[Any]:
    """A plain blocking connection for test set-up and inspection, never used by the code under test."""
    options = {**MYSQL, **overrides}
    conn = pymysql.connect(
        host=options["host"],
        port=options["port"],
        user=options["user"],
        password=options["password"],
        database=options["database"],
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def admin_query(sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with admin_connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


@pytest.fixture
def mysql_options() -> dict[str, Any]:
    require_server("MySQL/MariaDB", HOST, PORT)
    return {
        "mysql_host": HOST,
        "mysql_port": PORT,
        "mysql_user": MYSQL["user"],
        "mysql_password": MYSQL["password"],
        "mysql_database": MYSQL["database"],
    }


@pytest.fixture
def table_name(mysql_options: dict[str, Any]) -> Iterator[str]:
    """A fresh table name per test; the table is dropped afterwards if the test created it."""
    name = f"pyncette_test_{uuid.uuid4().hex[:12]}"
    yield name
    admin_query(f"DROP TABLE IF EXISTS `{name}`")
