"""Every default, SQL name and tuning constant of the PostgreSQL backend, each with its reason."""

from __future__ import annotations

import re

DEFAULT_URL = "postgres://localhost/pyncette"
"""pyncette 1.x default, kept so that existing deployments start unchanged."""

DEFAULT_TABLE_NAME = "pyncette_tasks"
"""pyncette 1.x default; a 1.x table under this name is detected and refused, never reused."""

MAX_DEFAULT_POOL_SIZE = 10
"""Statements are short, so a few connections serve many concurrent tasks; PostgreSQL's default
``max_connections`` is 100 and is shared by every worker process."""

LISTENER_CONNECTIONS = 1
"""The pool the backend makes holds one extra connection for ``LISTEN`` while a wake-up callback is set."""

CONNECT_TIMEOUT = 10.0
"""Seconds before a connection attempt fails: an unreachable server must fail start-up promptly."""

STATEMENT_TIMEOUT = 60.0
"""Seconds before a statement on the backend's own pool is abandoned: they take milliseconds, so one
this slow sits on a dead connection that closed no socket (the retry then uses a fresh one)."""

CLOSE_TIMEOUT = 5.0
"""Seconds to close the pool gracefully on exit before connections are terminated."""

SCHEMA_VERSION = 1
"""Version of the table layout this release writes; stored in the table's comment."""

SCHEMA_COMMENT = "pyncette-postgres schema {version}"
"""Table comment recording the schema version (a comment needs no extra table or privilege)."""

SCHEMA_COMMENT_PATTERN = re.compile(r"^pyncette-postgres schema (\d+)$")
"""Parses :data:`SCHEMA_COMMENT`."""

DUE_INDEX_SUFFIX = "_due_idx"
"""Name suffix of the partial index on (task, next_run) that makes a claim read only due rows."""

MAX_TABLE_NAME_LENGTH = 63 - len(DUE_INDEX_SUFFIX)
"""PostgreSQL truncates identifiers beyond 63 bytes; the index name must stay intact too."""

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Unquoted-identifier syntax; names are folded to lower case as PostgreSQL does unquoted."""

ADVISORY_LOCK_NAMESPACE = "pyncette-postgres:"
"""Prefix hashed with the table name into the advisory lock that serialises schema creation."""

CHANNEL_PREFIX = "pyncette:"
"""Prefix of the LISTEN/NOTIFY channel, which is derived from the qualified table name."""

MAX_CHANNEL_LENGTH = 63
"""Channel names are identifiers; longer ones are replaced by a hash of the table name."""

MAX_NOTIFY_TASK_LENGTH = 7900
"""NOTIFY payloads must stay below 8000 bytes; scopes with longer names are not pushed (polling finds them)."""

MAX_ROWS_PER_STATEMENT = 5000
"""Largest batch sent as one statement: bounds the statement's memory and how long it holds row locks
(claims skip locked rows, so a huge upsert would hide its rows from every worker meanwhile)."""

RETRY_ATTEMPTS = 4
"""Tries of one operation on transient failures before it raises BackendError for the scheduler to retry."""

RETRY_BASE_DELAY = 0.1
"""Seconds of the first back-off; it doubles per try, with full jitter, so retries of many workers spread out."""

RETRY_MAX_DELAY = 1.0
"""Upper bound of one back-off inside an operation: longer outages are the scheduler's poll loop's business."""

LISTENER_MAX_DELAY = 30.0
"""Upper bound of the back-off between reconnection attempts of the listening connection."""

LISTENER_HEALTHCHECK_INTERVAL = 30.0
"""Seconds between pings on the listening connection, to notice drops that close no socket."""

TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure: the transaction was rolled back
        "40P01",  # deadlock_detected: the transaction was rolled back
        "55P03",  # lock_not_available
        "53300",  # too_many_connections: at connect, nothing was sent
        "57P01",  # admin_shutdown: server restarting, the statement was aborted
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: server starting up
    }
)
"""Server errors after which the statement is known not to have been applied, so any operation may retry."""
