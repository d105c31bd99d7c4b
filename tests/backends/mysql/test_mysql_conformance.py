from __future__ import annotations

from typing import Any

import pytest

from pyncette.mysql import mysql_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestMySQLConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self, mysql_options: dict[str, Any], table_name: str) -> RepositoryFactory:
        return lambda: mysql_repository(**mysql_options, mysql_table_name=table_name)
