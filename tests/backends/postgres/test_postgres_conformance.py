from __future__ import annotations

import pytest

from pyncette.postgres import postgres_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestPostgresConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self, postgres_url: str, table_name: str) -> RepositoryFactory:
        return lambda: postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name, concurrency_limit=4)
