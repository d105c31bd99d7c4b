"""Registers the ``redis`` backend through the ``pyncette`` entry-point group."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo
from pyncette.redis.factory import OPTIONS, redis_repository


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="redis",
            factory=redis_repository,
            options=dict(OPTIONS),
            description="Redis 6.2+ (standalone or Cluster): Lua scripts, sorted-set claims, pub/sub wake-ups",
            distribution="pyncette-redis",
        )
    ]
