"""The repository conformance suite on a database file, on ``:memory:`` and on the pre-3.35 claim path."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest

from pyncette.sqlite import SqliteRepository, sqlite_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory
from tests.backends.sqlite.conftest import direct_repository


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


class TestSqliteWithoutReturningConformance(RepositoryConformance):
    """The claim path for SQLite older than 3.35 (SELECT then UPDATE in one immediate transaction)."""

    @pytest.fixture
    def repository_factory(self, database: str, table_name: str) -> RepositoryFactory:
        return lambda: direct_repository(database, table_name, use_returning=False)
