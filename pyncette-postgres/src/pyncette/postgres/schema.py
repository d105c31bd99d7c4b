"""The table layout, its version, and creating or upgrading it safely when many workers start at once."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import asyncpg
import attrs

from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.postgres import constants
from pyncette.postgres._connection import DRIVER_ERRORS, describe

logger = logging.getLogger("pyncette.postgres")

MIGRATIONS: dict[int, tuple[str, ...]] = {}
"""Statements that upgrade the schema from version ``key`` to ``key + 1``; ``{table}`` and
``{index}`` are replaced by the quoted names. Empty: version 1 is the first layout."""

CREATE_STATEMENTS = (
    """
    CREATE TABLE {table} (
        task text COLLATE "C" NOT NULL,
        instance text COLLATE "C" NOT NULL,
        spec text NOT NULL,
        data text NOT NULL,
        next_run timestamptz NOT NULL,
        paused boolean NOT NULL DEFAULT false,
        locked_until timestamptz,
        locked_by text,
        fencing_token bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (task, instance)
    ) WITH (fillfactor = 80)
    """,
    "CREATE INDEX {index} ON {table} (task, next_run) WHERE NOT paused",
)
"""Version-1 layout. ``COLLATE "C"`` makes listings sort by code point, like Python; fillfactor
leaves room on each page so that claims and releases can be HOT updates."""


@attrs.frozen
class TableName:
    """A validated, optionally schema-qualified table name."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, value: object) -> TableName:
        if not isinstance(value, str):
            raise ConfigurationError(f"option postgres_table_name must be a string, not {type(value).__name__}")
        parts = value.split(".")
        if len(parts) > 2 or not all(constants.IDENTIFIER_PATTERN.match(part) for part in parts):
            raise ConfigurationError(
                f"option postgres_table_name={value!r} is not a valid table name: use letters, digits and "
                "underscores, not starting with a digit, optionally prefixed by a schema name and a dot"
            )
        if any(len(part) > constants.MAX_TABLE_NAME_LENGTH for part in parts):
            raise ConfigurationError(
                f"option postgres_table_name={value!r} is too long: at most {constants.MAX_TABLE_NAME_LENGTH} characters per name"
            )
        lowered = [part.lower() for part in parts]
        return cls(schema=lowered[0] if len(lowered) == 2 else None, name=lowered[-1])

    @property
    def qualified(self) -> str:
        """The name as written, e.g. ``pyncette_tasks`` or ``jobs.pyncette_tasks``."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def quoted(self) -> str:
        return ".".join(_quote(part) for part in (self.schema, self.name) if part)

    @property
    def quoted_index(self) -> str:
        """The due index; PostgreSQL creates it in the table's schema, so it is never qualified."""
        return _quote(self.name + constants.DUE_INDEX_SUFFIX)

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this table."""
        channel = constants.CHANNEL_PREFIX + self.qualified
        if len(channel) > constants.MAX_CHANNEL_LENGTH:
            digest = hashlib.sha256(self.qualified.encode()).hexdigest()
            channel = (constants.CHANNEL_PREFIX + digest)[: constants.MAX_CHANNEL_LENGTH]
        return channel

    @property
    def advisory_lock_key(self) -> int:
        digest = hashlib.sha256((constants.ADVISORY_LOCK_NAMESPACE + self.qualified).encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _format(statement: str, table: TableName) -> str:
    return statement.format(table=table.quoted, index=table.quoted_index)


def comment(version: int) -> str:
    return constants.SCHEMA_COMMENT.format(version=version)


async def _stored_version(connection: Any, table: TableName) -> tuple[bool, int | None]:
    """Whether the table exists, and the schema version its comment records (``None`` if none)."""
    row = await connection.fetchrow(
        "SELECT c.oid IS NOT NULL AS present, obj_description(c.oid, 'pg_class') AS note "
        "FROM (SELECT to_regclass($1) AS oid) AS c",
        table.quoted,
    )
    if not row["present"]:
        return False, None
    match = constants.SCHEMA_COMMENT_PATTERN.match(row["note"] or "")
    return True, int(match.group(1)) if match else None


async def ensure_schema(pool: Any, table: TableName, *, skip_create: bool) -> None:
    """Check the table's schema version; create or upgrade it unless ``skip_create``.

    Creation and upgrades run in one transaction under an advisory lock derived from the table
    name, so workers starting together neither race on ``CREATE TABLE`` nor upgrade twice.
    """
    try:
        async with pool.acquire() as connection:
            present, version = await _stored_version(connection, table)
            if present and version == constants.SCHEMA_VERSION:
                return
            _refuse(table, present, version, skip_create)
            # A session lock taken before the transaction: a transaction that starts after the lock
            # was granted is sure to see the catalog as the previous holder committed it.
            await connection.execute("SELECT pg_advisory_lock($1)", table.advisory_lock_key)
            try:
                await _create_or_upgrade(connection, table, skip_create)
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", table.advisory_lock_key)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ConfigurationError(
            f"not allowed to create or upgrade table {table.qualified!r} (option postgres_table_name): {describe(exc)}; "
            "create it as described in the pyncette-postgres documentation and set postgres_skip_table_create=True"
        ) from None
    except asyncpg.InvalidSchemaNameError as exc:
        raise ConfigurationError(
            f"the schema of option postgres_table_name={table.qualified!r} does not exist: {describe(exc)}"
        ) from None
    except DRIVER_ERRORS as exc:
        raise BackendError(f"PostgreSQL schema check of table {table.qualified!r} failed: {describe(exc)}") from None


async def _create_or_upgrade(connection: Any, table: TableName, skip_create: bool) -> None:
    async with connection.transaction():
        present, version = await _stored_version(connection, table)
        if present and version == constants.SCHEMA_VERSION:
            return
        _refuse(table, present, version, skip_create)
        if not present:
            for statement in CREATE_STATEMENTS:
                await connection.execute(_format(statement, table))
            logger.info("created PostgreSQL table %s (schema %d)", table.qualified, constants.SCHEMA_VERSION)
        else:
            assert version is not None
            for step in range(version, constants.SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    await connection.execute(_format(statement, table))
            logger.info("upgraded PostgreSQL table %s from schema %d to %d", table.qualified, version, constants.SCHEMA_VERSION)
        # COMMENT takes no parameters; the text is ours and contains no quote.
        await connection.execute(f"COMMENT ON TABLE {table.quoted} IS '{comment(constants.SCHEMA_VERSION)}'")


def _refuse(table: TableName, present: bool, version: int | None, skip_create: bool) -> None:
    """Raise unless the table can be created or upgraded to the current version."""
    name = f"table {table.qualified!r} (option postgres_table_name)"
    if not present:
        if skip_create:
            raise SchemaVersionError(
                f"{name} does not exist and postgres_skip_table_create is set; create it as described in the "
                "pyncette-postgres documentation, or let the backend create it"
            )
        return
    if version is None:
        raise SchemaVersionError(
            f"{name} exists but carries no pyncette-postgres schema version (is it a pyncette 1.x table? Its layout "
            "is not compatible); choose another postgres_table_name. If you created it by hand from the documented "
            f"DDL, record the version with: COMMENT ON TABLE {table.quoted} IS '{comment(constants.SCHEMA_VERSION)}'"
        )
    if version > constants.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{name} has schema version {version}, newer than the {constants.SCHEMA_VERSION} this pyncette-postgres "
            "supports; upgrade pyncette-postgres on this worker"
        )
    if any(step not in MIGRATIONS for step in range(version, constants.SCHEMA_VERSION)):
        raise SchemaVersionError(f"{name} has schema version {version}, which this pyncette-postgres cannot upgrade")
    if skip_create:
        raise SchemaVersionError(
            f"{name} has schema version {version} but this pyncette-postgres needs {constants.SCHEMA_VERSION}, and "
            "postgres_skip_table_create is set, so it is not upgraded; start once without it (with a role allowed to "
            "ALTER the table), or apply the upgrade by hand"
        )
