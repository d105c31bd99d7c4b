"""Every name, default and error code the MySQL backend relies on, each with the reason for it."""

from __future__ import annotations

import re

DEFAULT_TABLE_NAME = "pyncette_tasks"
"""The pyncette 1.x default, so an app that relied on it keeps its option set (the schema differs)."""

DEFAULT_PORT = 3306
"""The port MySQL and MariaDB listen on out of the box."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds; a black-holed host must fail start-up quickly instead of hanging for minutes."""

DEFAULT_POOL_EXTRA = 2
"""Connections beyond ``concurrency_limit``: the poll loop and a registration may run beside every task."""

MAX_DEFAULT_POOL_SIZE = 32
"""Cap of the derived pool size: the server's default ``max_connections`` is 151, shared by all workers."""

TABLE_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""Unquoted-safe identifiers only (64 is the server's limit); names are validated before any SQL is built."""

SCHEMA_VERSION = 1
"""Stored in the table comment; bumped on any incompatible change to the columns or their meaning."""

SCHEMA_COMMENT_PREFIX = "pyncette-mysql schema "
"""Table comment marker: readable through information_schema without another table or privilege."""

SCHEMA_LOCK_PREFIX = "pyncette_mysql_"
"""GET_LOCK name prefix; the rest is a digest because MySQL limits lock names to 64 characters."""

SCHEMA_LOCK_TIMEOUT = 30
"""Seconds a starting worker waits for another one that is creating the table."""

DUE_INDEX = "pyncette_due"
"""Index on (task, due_at); named so that claims can FORCE it even when statistics are poor."""

MAX_TASK_BYTES = 1024
"""Key length of ``task``: with 2048 bytes of instance the primary key stays within InnoDB's 3072."""

MAX_INSTANCE_BYTES = 2048
"""512 characters (pyncette.repository.MAX_INSTANCE_NAME_LENGTH) of up to 4 UTF-8 bytes each."""

MAX_OWNER_BYTES = 1024
"""Worker ids are short; the bound only keeps the column inline."""

BATCH_MAX_ITEMS = 500
"""Registrations or completions written per transaction: bounds lock count and statement size."""

BATCH_MAX_BYTES = 1 << 20
"""Spec and data bytes per transaction; keeps scripts well below the smallest max_allowed_packet (4 MiB)."""

RETRY_ATTEMPTS = 6
"""Attempts of one operation on a transient failure before it is reported as a BackendError."""

RETRY_BASE_DELAY = 0.02
"""Seconds of the first back-off; doubled per attempt, with full jitter between half and all of it."""

RETRY_MAX_DELAY = 1.0
"""Seconds; the scheduler's own poll back-off takes over beyond a few seconds in total."""

# Server error codes
ER_DUP_ENTRY = 1062  # a concurrent registration created the same key: retry, then it is an update
ER_LOCK_WAIT_TIMEOUT = 1205  # another transaction held a row too long: statement rolled back, retry
ER_LOCK_DEADLOCK = 1213  # InnoDB chose this transaction as the deadlock victim: rolled back, retry
ER_CHECKREAD = 1020  # MariaDB 11.6+ snapshot isolation "record has changed": rolled back, retry
ER_CON_COUNT_ERROR = 1040  # too many connections: throttling, retry after a back-off
ER_TABLE_EXISTS = 1050  # another process created the table first (without our GET_LOCK)
ER_DBACCESS_DENIED = 1044  # the user may not use mysql_database
ER_ACCESS_DENIED = 1045  # wrong mysql_user / mysql_password
ER_BAD_DB = 1049  # mysql_database does not exist
ER_TABLEACCESS_DENIED = 1142  # the user may not CREATE the table: pre-create it, set mysql_skip_table_create
ER_SERVER_SHUTDOWN = 1053  # the server is going down: the connection is lost
ER_CONNECTION_KILLED = 1927  # MariaDB: KILL CONNECTION or the server closed the session
ER_CLIENT_INTERACTION_TIMEOUT = 4031  # MySQL 8.0.24+: the server dropped an idle session

TRANSIENT_SERVER_ERRORS = frozenset({ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, ER_CHECKREAD, ER_CON_COUNT_ERROR})
"""Errors after which the server has rolled the statement back: retrying cannot apply anything twice."""

CONNECTION_ERRORS = frozenset(
    {0, 2003, 2006, 2013, 2014, 2055, ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED, ER_CLIENT_INTERACTION_TIMEOUT}
)
"""Client (2xxx, 0 = closed) and server codes meaning the session is gone; its outcome may be unknown."""
