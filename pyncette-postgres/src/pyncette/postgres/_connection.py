"""Connecting, retrying, and translating asyncpg errors into :mod:`pyncette.errors`.

Credentials never leave this module: messages carry the URL with its password masked, and driver
messages are scrubbed of it before they are wrapped.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import urllib.parse
from typing import Any, Awaitable, Callable, TypeVar

import anyio
import asyncpg

from pyncette.errors import BackendError, ConfigurationError
from pyncette.postgres import constants

logger = logging.getLogger("pyncette.postgres")

T = TypeVar("T")

DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)
"""What asyncpg raises for store failures (``asyncio.TimeoutError`` is not ``TimeoutError`` before 3.11;
``InternalClientError`` shows up when a connection breaks in the middle of a protocol exchange)."""

MASK = "***"


class Secrets:
    """The secret parts of a connection URL, and the URL with them masked."""

    def __init__(self, url: str) -> None:
        self.values: list[str] = []
        self.safe_url = url
        try:
            parts = urllib.parse.urlsplit(url)
            password = parts.password
        except ValueError:
            # Unparseable: show nothing of it rather than risk printing a password.
            self.safe_url = "<unparseable URL>"
            return
        netloc = parts.netloc
        if password:
            self.values += [password, urllib.parse.unquote(password)]
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostinfo}"
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        masked_query = []
        for name, value in query:
            if name.lower() in ("password", "sslpassword") and value:
                self.values.append(value)
                value = MASK
            masked_query.append((name, value))
        self.safe_url = urllib.parse.urlunsplit(
            (parts.scheme, netloc, parts.path, urllib.parse.urlencode(masked_query, safe="*"), parts.fragment)
        )

    def scrub(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    def leaks(self, text: str) -> bool:
        return any(value in text for value in self.values)


def describe(exc: BaseException, secrets: Secrets | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return secrets.scrub(text) if secrets else text


async def create_pool(url: str, size: int, secrets: Secrets) -> Any:
    """Open an asyncpg pool and its first connection, so bad settings fail at start-up.

    Errors carry the driver's message with secrets masked, but not the driver's exception: a
    start-up failure is reported as one line, not as a chain of driver frames.
    """
    where = f"PostgreSQL at {secrets.safe_url} (option postgres_url)"
    try:
        return await _open_pool(url, size)
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as exc:
        raise ConfigurationError(f"cannot log in to {where}: {describe(exc, secrets)}") from None
    except asyncpg.InvalidCatalogNameError as exc:
        raise ConfigurationError(f"the database of {where} does not exist: {describe(exc, secrets)}") from None
    except (asyncpg.ClientConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid option postgres_url ({secrets.safe_url}): {describe(exc, secrets)}") from None
    except DRIVER_ERRORS as exc:
        raise BackendError(f"cannot connect to {where}: {describe(exc, secrets)}") from None


async def _open_pool(url: str, size: int) -> Any:
    # No connection floor: asyncpg would restore it in the background, logging every failure with a
    # traceback while the server is away. Connections open on demand; the first one opens here.
    pool = await asyncpg.create_pool(
        dsn=url,
        min_size=0,
        max_size=size,
        timeout=constants.CONNECT_TIMEOUT,
        command_timeout=constants.STATEMENT_TIMEOUT,
    )
    try:
        async with pool.acquire():
            pass
    except BaseException:
        pool.terminate()
        raise
    return pool


class Failure(enum.Enum):
    """How an error leaves an operation."""

    NOT_APPLIED = "not applied"  # known not to have reached or changed the store: retry anything
    UNKNOWN = "unknown"  # the connection died mid-statement: retry only with a replay-safe statement
    FATAL = "fatal"  # retrying cannot help


def classify(exc: BaseException, sent: bool) -> Failure:
    """Classify ``exc``; ``sent`` says whether the statement may have reached the server."""
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        if exc.sqlstate in constants.TRANSIENT_SQLSTATES:
            return Failure.NOT_APPLIED
        if not sent and str(exc.sqlstate or "").startswith("08"):
            return Failure.NOT_APPLIED
        return Failure.FATAL
    if isinstance(exc, asyncpg.DataError):
        return Failure.FATAL
    if isinstance(exc, DRIVER_ERRORS):
        if not sent or (isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)):
            # asyncpg checks that the connection is open before it writes anything.
            return Failure.NOT_APPLIED
        return Failure.UNKNOWN
    return Failure.FATAL


def backoff(attempt: int, maximum: float = constants.RETRY_MAX_DELAY) -> float:
    """Full-jitter exponential back-off for the ``attempt``-th retry (0-based)."""
    return random.uniform(0, min(maximum, constants.RETRY_BASE_DELAY * 2**attempt))


async def run(
    pool: Any,
    operation: str,
    statement: Callable[[Any], Awaitable[T]],
    *,
    replay: Callable[[Any], Awaitable[T]] | None = None,
) -> T:
    """Run ``statement(connection)`` on a pooled connection, retrying transient failures.

    A failure is retried, with bounded jittered back-off, when the statement is known not to have
    been applied. When the connection died mid-statement, so that it may or may not have been
    applied, the retries run ``replay`` instead: a variant that gives the same answer whether or not
    the lost attempt was applied. Operations that need no variant pass ``statement`` itself. Other
    failures, and the last one, raise :class:`BackendError` with the driver's exception as cause.
    """
    attempt = 0
    current = statement
    while True:
        sent = False
        done: list[T] = []
        try:
            async with pool.acquire() as connection:
                sent = True
                done.append(await current(connection))
            return done[0]
        except DRIVER_ERRORS as exc:
            if done:
                # Only returning the connection to the pool failed; the pool replaces it.
                logger.debug("releasing a PostgreSQL connection failed: %s", describe(exc))
                return done[0]
            failure = classify(exc, sent)
            if (
                failure is Failure.FATAL
                or attempt + 1 >= constants.RETRY_ATTEMPTS
                or (failure is Failure.UNKNOWN and replay is None)
            ):
                raise BackendError(f"PostgreSQL {operation} failed ({failure.value}): {describe(exc)}") from exc
            if failure is Failure.UNKNOWN and replay is not None:
                current = replay
            delay = backoff(attempt)
            logger.warning("PostgreSQL %s failed (%s), retrying in %.2fs: %s", operation, failure.value, delay, describe(exc))
            attempt += 1
            await anyio.sleep(delay)
