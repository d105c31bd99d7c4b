"""The ``mysql`` repository factory: options, connection pool, start-up checks."""

from __future__ import annotations

import contextlib
import re
import ssl
from typing import Any, AsyncIterator

import aiomysql

from pyncette import options
from pyncette.errors import BackendError, ConfigurationError, PyncetteException
from pyncette.mysql import constants
from pyncette.mysql.repository import MySQLRepository, describe, is_encrypted
from pyncette.mysql.schema import ensure_schema

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def _scrub(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


def _startup_error(exc: BaseException, where: str, user: str | None, database: str | None) -> PyncetteException:
    code = getattr(exc, "args", (None,))[0] if getattr(exc, "args", None) else None
    if code == constants.ER_ACCESS_DENIED:
        return ConfigurationError(f"MySQL at {where} rejected user {user!r}: check mysql_user and mysql_password")
    if code == constants.ER_DBACCESS_DENIED:
        return ConfigurationError(f"MySQL user {user!r} may not use database {database!r} (mysql_database)")
    if code == constants.ER_BAD_DB:
        return ConfigurationError(f"MySQL database {database!r} (mysql_database) does not exist at {where}")
    # aiomysql reports a failed handshake as "can't connect" (2003), with the ssl error as the cause.
    tls_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(tls_error, ssl.SSLError):
        return BackendError(f"TLS handshake with MySQL at {where} failed (mysql_ssl): {tls_error}")
    return BackendError(f"cannot connect to MySQL at {where} (mysql_host / mysql_port): {describe(exc)}")


def _ssl_context(value: Any) -> ssl.SSLContext | None:
    if value is None or value is False:
        return None
    if value is True:
        return ssl.create_default_context()
    if isinstance(value, ssl.SSLContext):
        return value
    raise ConfigurationError(f"mysql_ssl must be an ssl.SSLContext, True or False, not {type(value).__name__}")


def default_pool_size(concurrency_limit: int | None) -> int:
    """``concurrency_limit`` plus the poll loop and a registration, capped to spare the server."""
    if concurrency_limit is None:
        return 10
    return max(2, min(concurrency_limit + constants.DEFAULT_POOL_EXTRA, constants.MAX_DEFAULT_POOL_SIZE))


async def _check_server(conn: Any, where: str) -> str:
    """Refuse servers without ``SKIP LOCKED``; return the current database."""
    async with conn.cursor() as cursor:
        await cursor.execute("SELECT VERSION(), DATABASE()")
        version, database = (await cursor.fetchall())[0]
    match = _VERSION.match(str(version))
    numbers = tuple(int(part) for part in match.groups()) if match else (0, 0, 0)
    mariadb = "mariadb" in str(version).lower()
    if numbers < ((10, 6, 0) if mariadb else (8, 0, 1)):
        raise ConfigurationError(
            f"the server at {where} runs {version}; pyncette-mysql needs MySQL 8.0.1+ or MariaDB 10.6+ (SKIP LOCKED)"
        )
    if database is None:
        raise ConfigurationError("the connection has no default database: set mysql_database (or the pool's db)")
    return str(database)


@contextlib.asynccontextmanager
async def mysql_repository(
    *,
    mysql_host: str = "localhost",
    mysql_port: int = constants.DEFAULT_PORT,
    mysql_user: str | None = None,
    mysql_password: str | None = None,
    mysql_database: str | None = None,
    mysql_table_name: str = constants.DEFAULT_TABLE_NAME,
    mysql_skip_table_create: bool = False,
    mysql_ssl: ssl.SSLContext | bool | None = None,
    mysql_pool_size: int | None = None,
    mysql_pool: Any = None,
    mysql_connect_timeout: float = constants.DEFAULT_CONNECT_TIMEOUT,
    concurrency_limit: int | None = None,
    batch_size: int | None = None,
    **_other_options: Any,
) -> AsyncIterator[MySQLRepository]:
    """Yield a :class:`MySQLRepository` on a new aiomysql pool, or on ``mysql_pool`` when given.

    The table is created (unless ``mysql_skip_table_create``) and its schema version checked before
    the repository is yielded; configuration problems raise :class:`~pyncette.errors.ConfigurationError`,
    an unreachable server :class:`~pyncette.errors.BackendError`, an incompatible table
    :class:`~pyncette.errors.SchemaVersionError`. A pool this factory created is closed on exit;
    ``mysql_pool`` is not. Keywords of other backends are ignored, as the app passes all its options.
    """
    del batch_size  # claims are sized by the scheduler; batches here by constants.BATCH_MAX_ITEMS
    if not isinstance(mysql_table_name, str) or not constants.TABLE_NAME_PATTERN.fullmatch(mysql_table_name):
        raise ConfigurationError(
            f"mysql_table_name {mysql_table_name!r} is not a valid table name "
            "(letters, digits and underscores, not starting with a digit, at most 64 characters)"
        )
    skip_create = options.flag("mysql_skip_table_create", mysql_skip_table_create)
    where = f"{mysql_host}:{mysql_port}"
    ssl_context = _ssl_context(mysql_ssl)
    if mysql_pool is None:
        options.integer("mysql_port", mysql_port, minimum=1, maximum=65535)
        connect_timeout = options.seconds("mysql_connect_timeout", mysql_connect_timeout)
        size = (
            default_pool_size(concurrency_limit)
            if mysql_pool_size is None
            else options.integer("mysql_pool_size", mysql_pool_size, minimum=1)
        )
        missing = [name for name, value in (("mysql_user", mysql_user), ("mysql_database", mysql_database)) if not value]
        if missing:
            raise ConfigurationError(f"the mysql backend needs {' and '.join(missing)} (or an existing mysql_pool)")
        try:
            pool = await aiomysql.create_pool(
                minsize=1,
                maxsize=size,
                host=mysql_host,
                port=mysql_port,
                user=mysql_user,
                password=mysql_password or "",
                db=mysql_database,
                charset="utf8mb4",
                autocommit=True,
                ssl=ssl_context,
                connect_timeout=connect_timeout,
            )
        except PyncetteException:
            raise
        except Exception as exc:
            error = _startup_error(exc, where, mysql_user, mysql_database)
            raise type(error)(_scrub(str(error), mysql_password)) from None
    else:
        pool = mysql_pool
        where = "the mysql_pool's server"
    try:
        try:
            async with pool.acquire() as conn:
                if ssl_context is not None and not is_encrypted(conn):
                    raise ConfigurationError(f"mysql_ssl is set but the server at {where} does not offer TLS")
                database = await _check_server(conn, where)
                await ensure_schema(conn, database, mysql_table_name, create=not skip_create)
        except PyncetteException:
            raise
        except Exception as exc:
            raise BackendError(_scrub(f"MySQL start-up check at {where} failed: {describe(exc)}", mysql_password)) from None
        yield MySQLRepository(pool, mysql_table_name, require_tls=ssl_context is not None)
    finally:
        if mysql_pool is None:
            pool.close()
            await pool.wait_closed()
