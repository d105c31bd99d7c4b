"""Redis backend of pyncette: ``Pyncette(backend="redis", redis_url=...)`` or ``redis_repository``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyncette.lazy import lazy_exports

if TYPE_CHECKING:
    from pyncette.redis.factory import redis_repository
    from pyncette.redis.repository import RedisRepository

__all__ = ["RedisRepository", "redis_repository"]

# The driver is imported on first use of these names, not when plugin discovery imports the package.
__getattr__ = lazy_exports(
    __name__, {"RedisRepository": "pyncette.redis.repository", "redis_repository": "pyncette.redis.factory"}
)
