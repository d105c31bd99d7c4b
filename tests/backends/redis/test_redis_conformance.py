from __future__ import annotations

import pytest

from pyncette.redis import redis_repository
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory


class TestRedisConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self, redis_url: str, namespace: str) -> RepositoryFactory:
        return lambda: redis_repository(redis_url=redis_url, redis_namespace=namespace)
