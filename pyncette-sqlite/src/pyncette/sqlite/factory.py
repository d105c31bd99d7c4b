"""``sqlite_repository(**options)``: opens the database, prepares the schema, yields the repository."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, AsyncIterator

import aiosqlite

from pyncette import options
from pyncette.errors import ConfigurationError, PyncetteException
from pyncette.sqlite.constants import (
    DEFAULT_BUSY_RETRIES,
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_TABLE_NAME,
    MEMORY_DATABASE,
    SYNCHRONOUS_LEVELS,
)
from pyncette.sqlite.repository import SqliteRepository, describe
from pyncette.sqlite.schema import validate_table_name

logger = logging.getLogger("pyncette.sqlite")


def _is_memory(database: str) -> bool:
    return database in (MEMORY_DATABASE, "") or (database.startswith("file:") and "mode=memory" in database)


def _validate(
    database: str | os.PathLike[str] | None,
    connection: aiosqlite.Connection | None,
    synchronous: Any,
) -> None:
    if database is not None and connection is not None:
        raise ConfigurationError("pass either sqlite_database or sqlite_connection, not both")
    if connection is not None and not isinstance(connection, aiosqlite.Connection):
        raise ConfigurationError(f"sqlite_connection must be an aiosqlite.Connection, not {type(connection).__name__}")
    if database is not None and not isinstance(database, (str, os.PathLike)):
        raise ConfigurationError(f"sqlite_database must be a path or {MEMORY_DATABASE!r}, not {type(database).__name__}")
    if synchronous is not None and (not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS_LEVELS):
        raise ConfigurationError(f"sqlite_synchronous={synchronous!r} must be one of {', '.join(SYNCHRONOUS_LEVELS)} or None")


def _check_directory(database: str) -> None:
    parent = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"sqlite_database={database!r}: directory {parent!r} does not exist")


@contextlib.asynccontextmanager
async def sqlite_repository(
    *,
    sqlite_database: str | os.PathLike[str] | None = None,
    sqlite_table_name: str = DEFAULT_TABLE_NAME,
    sqlite_skip_table_create: bool = False,
    sqlite_busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    sqlite_busy_retries: int = DEFAULT_BUSY_RETRIES,
    sqlite_wal: bool = True,
    sqlite_synchronous: str | None = None,
    sqlite_connection: aiosqlite.Connection | None = None,
    **_options: Any,
) -> AsyncIterator[SqliteRepository]:
    """Yield a :class:`SqliteRepository` on ``sqlite_database`` (or on ``sqlite_connection``).

    Raises :class:`~pyncette.errors.ConfigurationError` for invalid options,
    :class:`~pyncette.errors.BackendError` when the database cannot be opened and
    :class:`~pyncette.errors.SchemaVersionError` when the table's schema is missing (with
    ``sqlite_skip_table_create``), foreign or of another version. Other keyword options (the
    app's and other backends') are ignored. A connection passed in is left open on exit; one the
    factory opened is closed.
    """
    _validate(sqlite_database, sqlite_connection, sqlite_synchronous)
    busy_timeout = options.seconds("sqlite_busy_timeout", sqlite_busy_timeout, allow_zero=True)
    busy_retries = options.integer("sqlite_busy_retries", sqlite_busy_retries, minimum=0)
    wal = options.flag("sqlite_wal", sqlite_wal)
    skip_create = options.flag("sqlite_skip_table_create", sqlite_skip_table_create)
    table = validate_table_name(sqlite_table_name)
    settings: dict[str, Any] = {"table_name": table, "busy_retries": busy_retries}

    if sqlite_connection is not None:
        repository = SqliteRepository(sqlite_connection, description=describe(None, table), owned=False, **settings)
    else:
        database = os.fspath(sqlite_database) if sqlite_database is not None else MEMORY_DATABASE
        description = describe(database, table)
        memory = _is_memory(database)
        if not memory and not database.startswith("file:"):
            _check_directory(database)

        async def open_connection() -> aiosqlite.Connection:
            connection = await aiosqlite.connect(
                database, isolation_level=None, timeout=busy_timeout, uri=database.startswith("file:")
            )
            try:
                if wal and not memory:
                    rows = list(await connection.execute_fetchall("PRAGMA journal_mode=WAL"))
                    if rows and str(rows[0][0]).lower() != "wal":
                        logger.warning("%s: the database refused the WAL journal (mode %r)", description, rows[0][0])
                if sqlite_synchronous is not None:
                    await connection.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            except BaseException:
                await connection.close()
                raise
            return connection

        # :memory: lives and dies with its one connection, so it is never reopened.
        repository = SqliteRepository(
            None, description=description, opener=open_connection, reopen=not memory, owned=True, **settings
        )

    try:
        try:
            await repository.prepare(create=not skip_create)
        except PyncetteException as error:
            # The message carries the driver's text; its frames would only lengthen a start-up report.
            raise error from None
        yield repository
    finally:
        await repository.aclose()
