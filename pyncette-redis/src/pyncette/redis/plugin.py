"""Registers the ``redis`` backend through the ``pyncette`` entry-point group."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo
from pyncette.redis import constants

OPTIONS = {
    "redis_url": f"redis://, rediss:// (TLS) or unix:// URL of the server (default {constants.DEFAULT_URL!r})",
    "redis_namespace": f"prefix of every key, to share one server between apps (default {constants.DEFAULT_NAMESPACE!r})",
    "redis_timeout": f"seconds for connecting and for each reply (default {constants.DEFAULT_TIMEOUT})",
    "redis_pool_size": "maximum connections of the pool (default concurrency_limit + 2, at most 64)",
    "redis_client": "an existing redis.asyncio.Redis or RedisCluster client to use instead of redis_url; it is not closed",
    "redis_cluster": "connect to a Redis Cluster through the node in redis_url (default False)",
    "concurrency_limit": "common option: sizes the default connection pool",
    "batch_size": "common option: accepted, claims are sized by the scheduler",
}
"""Every keyword option :func:`redis_repository` accepts, with a one-line description."""


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="redis",
            factory="pyncette.redis.factory:redis_repository",
            options=dict(OPTIONS),
            description="Redis 6.2+ (standalone or Cluster): Lua scripts, sorted-set claims, pub/sub wake-ups",
            distribution="pyncette-redis",
        )
    ]
