"""The ``redis_repository`` factory: options, validation, client lifetime."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
import redis.asyncio.cluster as aioredis_cluster
import redis.asyncio.retry as redis_retry
import redis.backoff as redis_backoff
import redis.exceptions as redis_errors
from pyncette import options
from pyncette.errors import BackendError, ConfigurationError, PyncetteException
from pyncette.redis import constants
from pyncette.redis.repository import Client, RedisRepository, _secrets_of, redact_url


def _pool_size(value: Any, concurrency_limit: Any) -> int:
    if value is None:
        limit = concurrency_limit if isinstance(concurrency_limit, int) and concurrency_limit > 0 else 1
        return min(limit + constants.DEFAULT_POOL_EXTRA, constants.MAX_DEFAULT_POOL_SIZE)
    return options.integer("redis_pool_size", value, minimum=2)


def _make_client(url: str, timeout: float, pool_size: int) -> aioredis.Redis:
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(f"redis_url must start with redis://, rediss:// or unix://, got {shown!r}")
    try:
        # The driver never resends a command by itself: a resent claim could lock instances twice.
        # RedisRepository retries instead, with scripts that are safe to run twice.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=redis_retry.Retry(redis_backoff.NoBackoff(), 0),
        )
    except (ValueError, TypeError) as exc:
        detail = str(exc)
        for secret in _secrets_of(url):
            detail = detail.replace(secret, "***")
        raise ConfigurationError(f"redis_url {redact_url(url)!r} is invalid: {detail}") from None
    return aioredis.Redis.from_pool(pool)


def _check_cluster_support() -> None:
    if not hasattr(aioredis_cluster.RedisCluster, "pubsub"):  # asyncio cluster pub/sub came with redis-py 8.0
        raise ConfigurationError("redis_cluster needs redis-py 8.0 or later (pub/sub on redis.asyncio.RedisCluster)")


def _make_cluster_client(url: str, timeout: float, pool_size: int) -> aioredis_cluster.RedisCluster:
    """A cluster client that discovers the nodes from the one in ``url``; connects on first use."""
    _check_cluster_support()
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")):
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(f"redis_url must start with redis:// or rediss:// when redis_cluster is set, got {shown!r}")
    try:
        # No driver retries, as for the standalone client; the cluster's pool does not wait for a
        # free connection, so pool_size is per node and a momentary shortage is retried by the repository.
        return aioredis_cluster.RedisCluster.from_url(
            url,
            max_connections=pool_size,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=redis_retry.Retry(redis_backoff.NoBackoff(), 0),
        )
    except (ValueError, TypeError, redis_errors.RedisClusterException) as exc:
        detail = str(exc)
        for secret in _secrets_of(url):
            detail = detail.replace(secret, "***")
        raise ConfigurationError(f"redis_url {redact_url(url)!r} is invalid for a Redis Cluster: {detail}") from None


def _start_error(option: str, shown: str, exc: BaseException, secrets: list[str]) -> PyncetteException:
    detail = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        detail = detail.replace(secret, "***")
    if isinstance(exc, redis_errors.AuthenticationError) or "NOAUTH" in detail or "WRONGPASS" in detail:
        return ConfigurationError(f"{option}: authentication to Redis at {shown} failed; check the credentials ({detail})")
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return ConfigurationError(
            f"{option}: the TLS certificate of Redis at {shown} failed verification; check ssl_ca_certs "
            f"(the CA that signed the server's certificate) and the host name ({detail})"
        )
    if "Cluster mode is not enabled" in detail:  # redis-py's words for a standalone server
        return ConfigurationError(f"{option}: Redis at {shown} is not a cluster node; unset redis_cluster ({detail})")
    if isinstance(exc, redis_errors.ResponseError):
        return ConfigurationError(f"{option}: Redis at {shown} refused the backend's start-up commands ({detail})")
    return BackendError(f"{option}: cannot reach Redis at {shown} ({detail})")


@contextlib.asynccontextmanager
async def redis_repository(
    *,
    redis_url: str = constants.DEFAULT_URL,
    redis_namespace: str = constants.DEFAULT_NAMESPACE,
    redis_timeout: float = constants.DEFAULT_TIMEOUT,
    redis_pool_size: int | None = None,
    redis_client: Client | None = None,
    redis_cluster: bool = False,
    concurrency_limit: int | None = None,
    batch_size: int | None = None,
    **_other_options: Any,
) -> AsyncIterator[RedisRepository]:
    """Connect to Redis and yield a ready :class:`RedisRepository`.

    Fails at once with :class:`~pyncette.errors.ConfigurationError` (bad option, wrong
    credentials), :class:`~pyncette.errors.BackendError` (server unreachable) or
    :class:`~pyncette.errors.SchemaVersionError` (the namespace holds another key layout); the
    message names the option and never contains a password. A ``redis_client`` passed in
    (``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``) is used as is and left
    open; a client made from ``redis_url`` is closed on exit. ``redis_cluster=True`` makes that
    client a ``RedisCluster`` that discovers the cluster from the node in ``redis_url``.
    """
    del batch_size
    timeout = options.seconds("redis_timeout", redis_timeout)
    pool_size = _pool_size(redis_pool_size, concurrency_limit)
    cluster = options.flag("redis_cluster", redis_cluster)
    owned = redis_client is None
    client: Client
    if redis_client is None:
        make = _make_cluster_client if cluster else _make_client
        client = make(redis_url, timeout, pool_size)
        option, shown, secrets = "redis_url", redact_url(redis_url), _secrets_of(redis_url)
    else:
        if isinstance(redis_client, aioredis_cluster.RedisCluster):
            _check_cluster_support()
        elif not isinstance(redis_client, aioredis.Redis):
            raise ConfigurationError(
                "redis_client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster client, "
                f"got {type(redis_client).__name__}"
            )
        client, option, shown, secrets = redis_client, "redis_client", "the given client", []
    try:
        repository = RedisRepository(client, redis_namespace, secrets=secrets)
        try:
            await client.ping()
            await repository.start()
        except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
            raise _start_error(option, shown, exc, secrets) from None
        try:
            yield repository
        finally:
            await repository.close()
    finally:
        if owned:
            await client.aclose()
