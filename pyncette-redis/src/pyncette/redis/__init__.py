"""Redis backend of pyncette: ``Pyncette(backend="redis", redis_url=...)`` or ``redis_repository``."""

from __future__ import annotations

from pyncette.redis.factory import redis_repository
from pyncette.redis.repository import RedisRepository

__all__ = ["RedisRepository", "redis_repository"]
