"""Per-backend stores for the benchmarks: unique names, set-up and removal.

Every measurement gets a fresh store (an SQLite file, a Redis namespace, a table) with a unique
name, removed afterwards; nothing else on the shared servers is touched (no FLUSHALL, no DROP of
tables the benchmark did not name). DynamoDB runs against a moto server that the benchmark starts
on a free loopback port for the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

from common import ROOT

BACKENDS = ("sqlite", "redis", "postgres", "mysql", "dynamodb", "memory")
IN_PROCESS = {"memory"}
"""Backends whose store lives in one process: no worker processes sharing it, so no P = 2 and no lateness."""
REDIS_URL = "redis://127.0.0.1:6379"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = {"mysql_host": "127.0.0.1", "mysql_port": 3306, "mysql_user": "root", "mysql_password": "", "mysql_database": "test"}
DEFAULT_SQLITE_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else ""
"""SQLite files go to tmpfs by default: on this machine's virtual disk one fsync takes ~20 ms, which
would bound 1.1.0 (a commit per execution) to ~50 executions/s and measure the disk, not the code.
``--sqlite-dir`` puts them elsewhere ("" for the system temporary folder)."""
DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")
MOTO_SERVER = ROOT / "tests" / "backends" / "dynamodb" / "moto_server.py"
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never reach for real credentials or the instance metadata service.
    "AWS_CONFIG_FILE": "/nonexistent/pyncette-bench-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/pyncette-bench-aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class Services:
    """Servers the benchmark itself runs (moto for DynamoDB); stopped by :meth:`close`."""

    def __init__(self, backend: str, *, sqlite_dir: str | None = None) -> None:
        self.sqlite_dir = sqlite_dir if sqlite_dir is not None else DEFAULT_SQLITE_DIR
        self.dynamodb_endpoint = ""
        self._moto: subprocess.Popen[str] | None = None
        if backend == "dynamodb":
            self._moto = subprocess.Popen(
                [sys.executable, str(MOTO_SERVER), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            assert self._moto.stdout is not None
            self.dynamodb_endpoint = f"http://127.0.0.1:{int(self._moto.stdout.readline())}"

    def close(self) -> None:
        if self._moto is not None:
            self._moto.terminate()
            self._moto.wait(timeout=10)


@contextlib.contextmanager
def store(backend: str, services: Services, tag: str) -> Iterator[dict[str, Any]]:
    """A fresh, uniquely named store: ``{"factory": "module:function", "options": {...}, "env": {...}}``.

    A ``"v1"`` entry, when present, is the store to give pyncette 1.1.0 instead (see :func:`common.for_impl`).
    """
    # 1.1.0 accepts table names of lower-case letters and underscores only.
    name = f"bench_{tag}_{uuid.uuid4().hex[:8]}".translate(DIGITS_TO_LETTERS)
    factory = f"pyncette.{backend}:{backend}_repository"
    if backend == "memory":
        # One process only; 1.1.0 has no memory backend, its default (SQLite in memory) stands in.
        v1 = {"factory": "pyncette.sqlite:sqlite_repository", "options": {"sqlite_database": ":memory:"}}
        yield {"factory": "pyncette.memory:memory_repository", "options": {}, "v1": v1}
    elif backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="pyncette-bench-", dir=services.sqlite_dir or None))
        try:
            yield {"factory": factory, "options": {"sqlite_database": str(folder / f"{name}.db")}}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif backend == "redis":
        try:
            yield {"factory": factory, "options": {"redis_url": REDIS_URL, "redis_namespace": name}}
        finally:
            drop_redis_namespace(name)
    elif backend == "postgres":
        try:
            yield {"factory": factory, "options": {"postgres_url": POSTGRES_URL, "postgres_table_name": name}}
        finally:
            asyncio.run(drop_postgres_table(name))
    elif backend == "mysql":
        try:
            yield {"factory": factory, "options": {**MYSQL, "mysql_table_name": name}}
        finally:
            asyncio.run(drop_mysql_table(name))
    elif backend == "dynamodb":
        options = {"dynamodb_endpoint": services.dynamodb_endpoint, "dynamodb_region_name": "us-east-1"}
        # The moto server lives only as long as the run; its tables go with it.
        yield {"factory": factory, "options": {**options, "dynamodb_table_name": name}, "env": AWS_ENVIRONMENT}
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def drop_redis_namespace(namespace: str) -> None:
    """Delete the keys of one benchmark namespace (both implementations embed it in every key)."""
    import redis

    # UNLINK frees a million-field hash in the background instead of blocking the shared server.
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=120)
    try:
        batch = []
        for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


async def drop_postgres_table(table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await connection.close()


async def drop_mysql_table(table: str) -> None:
    import aiomysql

    options = {key.removeprefix("mysql_"): value for key, value in MYSQL.items()}
    connection = await aiomysql.connect(
        host=options["host"], port=options["port"], user=options["user"], password=options["password"], db=options["database"]
    )
    try:
        async with connection.cursor() as cursor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Unknown table" when the run never created it
                await cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    finally:
        connection.close()
