"""Registers the ``sqlite`` backend with pyncette through the ``pyncette`` entry point."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo
from pyncette.sqlite.constants import DEFAULT_BUSY_RETRIES, DEFAULT_BUSY_TIMEOUT, DEFAULT_TABLE_NAME, MEMORY_DATABASE

OPTIONS = {
    "sqlite_database": f"database file path or file: URI; {MEMORY_DATABASE!r} (default) keeps one private in-memory database",
    "sqlite_table_name": f"table holding the task instances (default {DEFAULT_TABLE_NAME!r})",
    "sqlite_skip_table_create": "do not create the schema, only check that it exists and is current (default False)",
    "sqlite_busy_timeout": f"seconds SQLite waits on a locked database before it reports busy (default {DEFAULT_BUSY_TIMEOUT})",
    "sqlite_busy_retries": f"back-off retries of an operation that found the database busy (default {DEFAULT_BUSY_RETRIES})",
    "sqlite_wal": "switch a database file to the WAL journal, needed for concurrent worker processes (default True)",
    "sqlite_synchronous": "PRAGMA synchronous for the connection: OFF, NORMAL, FULL or EXTRA (default: SQLite's, FULL)",
    "sqlite_connection": "an open aiosqlite.Connection to use instead of sqlite_database; it is not closed by pyncette",
}
"""Every option the factory accepts, with its one-line description for ``BackendInfo``."""


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="sqlite",
            factory="pyncette.sqlite.factory:sqlite_repository",
            options=dict(OPTIONS),
            description="SQLite file (shared by worker processes on one host) or :memory:",
            distribution="pyncette-sqlite",
        )
    ]
