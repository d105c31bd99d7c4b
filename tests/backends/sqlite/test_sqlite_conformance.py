"""The repository conformance suite on a database file and on ``:memory:``."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest

from pyncette.sqlite import SqliteRepository, sqlite_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestSqliteFileConformance(RepositoryConformance):
    """Every call opens a new connection to one file, as separate worker processes would."""

    @pytest.fixture
    def repository_factory(self, database: str, table_name: str) -> RepositoryFactory:
        return lambda: sqlite_repository(sqlite_database=database, sqlite_table_name=table_name)


class TestSqliteMemoryConformance(RepositoryConformance):
    """``:memory:`` is private to its connection, so every call shares one repository."""

    @pytest.fixture
    async def repository_factory(self) -> AsyncIterator[RepositoryFactory]:
        async with sqlite_repository(sqlite_database=":memory:") as shared:

            @contextlib.asynccontextmanager
            async def connect() -> AsyncIterator[SqliteRepository]:
                yield shared

            yield connect
