"""Every name, default and limit of the SQLite backend, each with the reason it has its value."""

from __future__ import annotations

import re

MEMORY_DATABASE = ":memory:"
"""The default database: private to one connection, so it is shared by serialising access to it."""

DEFAULT_TABLE_NAME = "pyncette_tasks"
"""Same default as pyncette 1.x, so ``sqlite_table_name`` keeps meaning what it meant."""

META_TABLE_NAME = "pyncette_schema"
"""One row per pyncette table in the file: several tables can share a database, so no PRAGMA user_version."""

DUE_INDEX_SUFFIX = "_due"
"""Index names share one namespace per database file, so the due index is named after its table."""

TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
"""Table names are spliced into SQL, so only plain identifiers are accepted (no quoting games)."""

RESERVED_PREFIX = "sqlite_"
"""SQLite refuses to create tables whose name starts with ``sqlite_``; reject them with a clear message."""

SCHEMA_VERSION = 1
"""Version of the table layout written by this release; a newer stored version is refused."""

DEFAULT_BUSY_TIMEOUT = 5.0
"""Seconds SQLite itself waits on a locked database before reporting it busy; writes here last milliseconds."""

DEFAULT_BUSY_RETRIES = 8
"""Busy reports retried per operation (on top of the wait above) before a BackendError is raised."""

BUSY_BACKOFF_INITIAL = 0.005
"""First back-off after a busy report, in seconds: short, because write transactions are short."""

BUSY_BACKOFF_MAX = 0.5
"""Back-off cap in seconds, so a long queue of writers never sleeps far past the moment the lock frees."""

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
"""Accepted values of ``sqlite_synchronous`` (PRAGMA synchronous); None keeps SQLite's default (FULL)."""

KEY_CHUNK = 400
"""Keys per ``instance IN (...)`` lookup: stays under the 999 host parameters of SQLite before 3.32."""

SQLITE_BUSY = 5
"""Primary result code: another connection holds a conflicting lock on the database file."""

SQLITE_LOCKED = 6
"""Primary result code: a conflict inside one shared cache; transient like SQLITE_BUSY."""

BROKEN_CONNECTION_CODES = frozenset({10, 14, 26})
"""SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_NOTADB: the connection's file went away; reopen before the next use."""

SQLITE_READONLY_DBMOVED = 8 | (4 << 8)
"""The database file was moved or deleted under an open connection; a fresh connection sees the new file."""
