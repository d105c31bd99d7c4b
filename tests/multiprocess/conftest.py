"""One ``store`` fixture over every backend whose store several processes can share.

Each parameter yields a :class:`Store`: the backend name, the options workers use (a fresh table or
namespace, dropped afterwards) and, for networked stores, the server address so that a fault test
can put a :class:`~tests.support.tcp_proxy.TcpProxy` in between.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
import pytest

from tests.support.servers import MYSQL, POSTGRES_URL, REDIS_URL, require_server


@attrs.frozen
class Store:
    backend: str
    options: dict[str, Any]
    address: tuple[str, int] | None = None
    via_proxy: Callable[[int], dict[str, Any]] | None = None
    environment: dict[str, str] = attrs.field(factory=dict)


def _name() -> str:
    return f"mp_{uuid.uuid4().hex[:10]}"


def _sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    pytest.importorskip("pyncette.sqlite")
    yield Store("sqlite", {"sqlite_database": str(tmp_path / "shared.db")})


def _redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    import redis

    require_server("Redis", "127.0.0.1", 6379)
    namespace = _name()
    yield Store(
        "redis",
        {"redis_url": REDIS_URL, "redis_namespace": namespace},
        ("127.0.0.1", 6379),
        lambda port: {"redis_url": f"redis://127.0.0.1:{port}/0", "redis_namespace": namespace},
    )
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"*{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    import anyio
    import asyncpg

    require_server("PostgreSQL", "127.0.0.1", 5432)
    table = _name()
    yield Store(
        "postgres",
        {"postgres_url": POSTGRES_URL, "postgres_table_name": table},
        ("127.0.0.1", 5432),
        lambda port: {"postgres_url": f"postgresql://postgres@127.0.0.1:{port}/test", "postgres_table_name": table},
    )

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        await connection.close()

    anyio.run(drop)


def _mysql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    import pymysql

    require_server("MariaDB", "127.0.0.1", 3306)
    table = _name()
    options = {
        "mysql_host": MYSQL["host"],
        "mysql_port": MYSQL["port"],
        "mysql_user": MYSQL["user"],
        "mysql_password": MYSQL["password"],
        "mysql_database": MYSQL["database"],
        "mysql_table_name": table,
    }
    yield Store("mysql", options, ("127.0.0.1", 3306), lambda port: {**options, "mysql_port": port})
    connection = pymysql.connect(
        host=str(MYSQL["host"]), port=int(MYSQL["port"]), user=str(MYSQL["user"]), password="", database=str(MYSQL["database"])
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    connection.close()


def _dynamodb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    from tests.backends.dynamodb.conftest import DUMMY_ENVIRONMENT, REGION, start_moto

    server = start_moto()
    table = _name()
    environment = {**DUMMY_ENVIRONMENT, "AWS_DEFAULT_REGION": REGION}
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)  # the test process seeds and lists through the same store
    options = {"dynamodb_endpoint": server.endpoint, "dynamodb_region_name": REGION, "dynamodb_table_name": table}
    try:
        yield Store(
            "dynamodb",
            options,
            ("127.0.0.1", server.port),
            lambda port: {**options, "dynamodb_endpoint": f"http://127.0.0.1:{port}"},
            environment,
        )
    finally:
        server.stop()


STORES = {"sqlite": _sqlite, "redis": _redis, "postgres": _postgres, "mysql": _mysql, "dynamodb": _dynamodb}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    yield from STORES[request.param](tmp_path, monkeypatch)


@pytest.fixture(params=[name for name in STORES if name != "sqlite"])
def networked_store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    yield from STORES[request.param](tmp_path, monkeypatch)
