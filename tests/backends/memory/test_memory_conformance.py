from __future__ import annotations

import contextlib
from typing import AsyncIterator

import pytest

from pyncette.memory import MemoryRepository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestMemoryConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self) -> RepositoryFactory:
        shared = MemoryRepository()

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[MemoryRepository]:
            yield shared

        return connect
