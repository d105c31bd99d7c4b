"""The table layout and its start-up check: create unless skipped, versioned, guarded by GET_LOCK.

Times are BIGINT microseconds since the Unix epoch (UTC), so neither the server's nor the session's
time zone can shift them and microseconds round-trip exactly. Names and payloads are binary strings:
VARBINARY and BLOB compare byte for byte with no trailing-space padding or case folding, and the
byte order of UTF-8 is the code point order that listings must follow.

``due_at`` is generated from the other columns: ``NULL`` when paused, else the later of ``next_run``
and ``locked_until``. An instance is due exactly when ``due_at <= now``, so one index on
``(task, due_at)`` serves claims (a range scan of due rows only) and ``next_due`` (a MIN lookup).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.mysql import constants

_COMMENT_VERSION = re.compile(re.escape(constants.SCHEMA_COMMENT_PREFIX) + r"(\d+)")


def create_table_sql(table: str) -> str:
    """The CREATE TABLE statement of schema version :data:`~pyncette.mysql.constants.SCHEMA_VERSION`."""
    return f"""CREATE TABLE `{table}` (
  task VARBINARY({constants.MAX_TASK_BYTES}) NOT NULL,
  instance VARBINARY({constants.MAX_INSTANCE_BYTES}) NOT NULL,
  spec LONGBLOB NOT NULL,
  data LONGBLOB NOT NULL,
  next_run BIGINT NOT NULL,
  paused BOOLEAN NOT NULL DEFAULT FALSE,
  locked_until BIGINT NULL,
  locked_by VARBINARY({constants.MAX_OWNER_BYTES}) NULL,
  fencing_token BIGINT NOT NULL DEFAULT 0,
  due_at BIGINT GENERATED ALWAYS AS (IF(paused, NULL, GREATEST(next_run, COALESCE(locked_until, next_run)))) STORED,
  PRIMARY KEY (task, instance),
  KEY {constants.DUE_INDEX} (task, due_at)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC COMMENT='{constants.SCHEMA_COMMENT_PREFIX}{constants.SCHEMA_VERSION}'"""


def lock_name(database: str, table: str) -> str:
    """The GET_LOCK name that serialises schema creation of one table across workers."""
    digest = hashlib.sha256(f"{database}.{table}".encode()).hexdigest()
    return constants.SCHEMA_LOCK_PREFIX + digest[: 64 - len(constants.SCHEMA_LOCK_PREFIX)]


async def _query(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


async def _table_comment(conn: Any, table: str) -> str | None:
    rows = await _query(
        conn,
        "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    if not rows:
        return None
    comment = rows[0][0]
    return comment.decode() if isinstance(comment, bytes) else str(comment or "")


def check_version(table: str, comment: str) -> None:
    """Refuse a table this version cannot use, saying what to do about it."""
    match = _COMMENT_VERSION.fullmatch(comment.strip())
    if match is None:
        raise SchemaVersionError(
            f"table {table!r} (mysql_table_name) exists but was not created by pyncette-mysql 2 "
            f"(its comment is {comment!r}, expected {constants.SCHEMA_COMMENT_PREFIX}{constants.SCHEMA_VERSION!s}); "
            "a pyncette 1.x table cannot be reused: choose another mysql_table_name"
        )
    version = int(match.group(1))
    if version > constants.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"table {table!r} (mysql_table_name) has schema version {version}, newer than the "
            f"{constants.SCHEMA_VERSION} this pyncette-mysql supports: upgrade pyncette-mysql"
        )
    if version < constants.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"table {table!r} (mysql_table_name) has schema version {version}, older than "
            f"{constants.SCHEMA_VERSION}; no automatic upgrade exists for it"
        )


async def ensure_schema(conn: Any, database: str, table: str, *, create: bool) -> None:
    """Check the table's schema version, creating the table first unless ``create`` is false."""
    if not create:
        comment = await _table_comment(conn, table)
        if comment is None:
            raise ConfigurationError(
                f"table {table!r} (mysql_table_name) does not exist in database {database!r} and "
                "mysql_skip_table_create is set: create it first (see docs/backends/mysql.md)"
            )
        check_version(table, comment)
        return
    name = lock_name(database, table)
    (acquired,) = (await _query(conn, "SELECT GET_LOCK(%s, %s)", (name, constants.SCHEMA_LOCK_TIMEOUT)))[0]
    if acquired != 1:
        raise BackendError(
            f"timed out after {constants.SCHEMA_LOCK_TIMEOUT}s waiting for another worker to create table {table!r}"
        )
    try:
        comment = await _table_comment(conn, table)
        if comment is None:
            try:
                await _query(conn, create_table_sql(table))
            except Exception as exc:
                code = exc.args[0] if exc.args else None
                if code == constants.ER_TABLEACCESS_DENIED:
                    raise ConfigurationError(
                        f"the MySQL user may not create table {table!r} (mysql_table_name) in database {database!r}: "
                        "create it once with a privileged user (see docs/backends/mysql.md) and set mysql_skip_table_create"
                    ) from None
                if code != constants.ER_TABLE_EXISTS:
                    raise
            comment = await _table_comment(conn, table)
            if comment is None:
                raise BackendError(f"table {table!r} (mysql_table_name) is missing right after it was created")
        check_version(table, comment)
    finally:
        await _query(conn, "SELECT RELEASE_LOCK(%s)", (name,))
