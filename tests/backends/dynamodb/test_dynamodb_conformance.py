from __future__ import annotations

from typing import Any

import pytest

from pyncette.dynamodb import dynamodb_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestDynamoDBConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self, dynamodb_options: dict[str, Any]) -> RepositoryFactory:
        return lambda: dynamodb_repository(**dynamodb_options)
