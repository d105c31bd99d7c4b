from __future__ import annotations

import contextlib
import pathlib
import uuid
from typing import Any, AsyncIterator

import aiosqlite
import pytest

from pyncette.sqlite import SqliteRepository
from pyncette.sqlite.repository import describe


@pytest.fixture
def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def database(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "pyncette.db")


@contextlib.asynccontextmanager
async def direct_repository(database: str, table_name: str, **settings: Any) -> AsyncIterator[SqliteRepository]:
    """A repository built by hand, for settings the factory does not expose (``use_returning``)."""

    async def open_connection() -> aiosqlite.Connection:
        connection = await aiosqlite.connect(database, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        return connection

    repository = SqliteRepository(
        None, table_name=table_name, description=describe(database, table_name), opener=open_connection, **settings
    )
    try:
        await repository.prepare(create=True)
        yield repository
    finally:
        await repository.aclose()
