"""The table layout and every SQL statement of the backend, built once per validated table name.

Times are integer microseconds since the Unix epoch (UTC), so they round-trip exactly and compare
as integers. ``paused`` is 0 or 1. The partial index ``<table>_due`` on ``(task, ELIGIBLE) WHERE
paused = 0``, where ``ELIGIBLE`` is when an instance can next be claimed (``next_run``, or the end
of a lease that outlasts it), serves the claim (an ordered range scan of exactly the claimable
rows: paused and locked rows are never read) and the ``next_due`` lookup (one index seek).
"""

from __future__ import annotations

import attrs

from pyncette.errors import ConfigurationError
from pyncette.sqlite.constants import DUE_INDEX_SUFFIX, META_TABLE_NAME, RESERVED_PREFIX, TABLE_NAME_PATTERN

ELIGIBLE = "max(next_run, coalesce(locked_until, 0))"
"""When a row can next be claimed; ``ELIGIBLE <= now`` is exactly "due and not locked" (times are >= 0)."""

COLUMNS = "task, instance, spec, data, next_run, paused, locked_until, locked_by, fencing_token"
"""The columns of a :class:`~pyncette.model.TaskState`, in the order ``row_to_state`` reads them."""


def validate_table_name(name: object) -> str:
    """Return ``name`` if it is a plain identifier usable as a pyncette table, else raise ConfigurationError."""
    if not isinstance(name, str) or not TABLE_NAME_PATTERN.match(name):
        raise ConfigurationError(
            f"sqlite_table_name={name!r} is not a valid table name: use 1 to 63 letters, digits and "
            "underscores, not starting with a digit"
        )
    if name.lower().startswith(RESERVED_PREFIX) or name.lower() == META_TABLE_NAME:
        raise ConfigurationError(f"sqlite_table_name={name!r} is reserved (by SQLite or by pyncette's schema table)")
    return name


def meta_ddl() -> str:
    return f'CREATE TABLE IF NOT EXISTS "{META_TABLE_NAME}" (table_name TEXT PRIMARY KEY, version INTEGER NOT NULL)'


@attrs.frozen
class Statements:
    """SQL text for one table; the name is validated before any of it is built."""

    table: str
    index: str
    create_table: str
    create_index: str
    read_version: str
    write_version: str
    table_exists: str
    claim_select: str
    claim_instance_select: str
    claim_update: str
    next_due: str
    first_eligible: str
    count_due: str
    existing_for_register: str
    insert: str
    update_registration: str
    existing_for_complete: str
    complete_delete: str
    complete_update: str
    extend: str
    delete: str
    pause: str
    get: str
    list_first: str
    list_after: str

    @classmethod
    def for_table(cls, table: str) -> Statements:
        name = validate_table_name(table)
        t = f'"{name}"'
        index = f"{name}{DUE_INDEX_SUFFIX}"
        # The index expression must be repeated verbatim for SQLite to use the index.
        due = f"task = :task AND paused = 0 AND {ELIGIBLE} <= :now"
        return cls(
            table=name,
            index=index,
            create_table=(
                f"CREATE TABLE IF NOT EXISTS {t} ("
                "task TEXT NOT NULL, instance TEXT NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL, "
                "next_run INTEGER NOT NULL, paused INTEGER NOT NULL DEFAULT 0, locked_until INTEGER, "
                "locked_by TEXT, fencing_token INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (task, instance))"
            ),
            create_index=f'CREATE INDEX IF NOT EXISTS "{index}" ON {t} (task, {ELIGIBLE}) WHERE paused = 0',
            read_version=f'SELECT version FROM "{META_TABLE_NAME}" WHERE table_name = ?',
            write_version=f'INSERT OR REPLACE INTO "{META_TABLE_NAME}" (table_name, version) VALUES (?, ?)',
            table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            claim_select=f"SELECT rowid, {COLUMNS} FROM {t} WHERE {due} ORDER BY {ELIGIBLE} LIMIT :limit",
            claim_instance_select=f"SELECT rowid, {COLUMNS} FROM {t} WHERE {due} AND instance = :instance",
            claim_update=f"UPDATE {t} SET locked_by = ?, locked_until = ?, fencing_token = ? WHERE rowid = ?",
            next_due=f"SELECT min({ELIGIBLE}) FROM {t} WHERE task = ? AND paused = 0 AND {ELIGIBLE} > ?",
            first_eligible=f"SELECT min({ELIGIBLE}) FROM {t} WHERE task = ? AND paused = 0",
            count_due=f"SELECT count(*), min({ELIGIBLE}) FROM {t} WHERE {due}",
            existing_for_register=f"SELECT instance, locked_until FROM {t} WHERE task = ? AND instance IN ",
            insert=f"INSERT INTO {t} (task, instance, spec, data, next_run) VALUES (?, ?, ?, ?, ?)",
            # SET expressions see the row as it was before the UPDATE, so `spec = :spec` compares the stored spec.
            update_registration=(
                f"UPDATE {t} SET spec = :spec, "
                "next_run = CASE WHEN spec = :spec THEN next_run ELSE :next_run END, "
                "locked_by = CASE WHEN :force THEN NULL ELSE locked_by END, "
                "locked_until = CASE WHEN :force THEN NULL ELSE locked_until END, "
                "fencing_token = CASE WHEN :force THEN max(fencing_token + 1, :now) ELSE fencing_token END "
                "WHERE task = :task AND instance = :instance"
            ),
            existing_for_complete=f"SELECT instance, locked_by, fencing_token FROM {t} WHERE task = ? AND instance IN ",
            complete_delete=f"DELETE FROM {t} WHERE task = ? AND instance = ? AND locked_by = ? AND fencing_token = ?",
            complete_update=(
                f"UPDATE {t} SET next_run = ?, data = ?, locked_by = NULL, locked_until = NULL "
                "WHERE task = ? AND instance = ? AND locked_by = ? AND fencing_token = ?"
            ),
            extend=f"UPDATE {t} SET locked_until = ? WHERE task = ? AND instance = ? AND locked_by = ? AND fencing_token = ?",
            delete=f"DELETE FROM {t} WHERE task = ? AND instance = ?",
            pause=(
                f"UPDATE {t} SET paused = ?, next_run = coalesce(?, next_run), data = coalesce(?, data) "
                "WHERE task = ? AND instance = ?"
            ),
            get=f"SELECT {COLUMNS} FROM {t} WHERE task = ? AND instance = ?",
            list_first=f"SELECT {COLUMNS} FROM {t} WHERE task = ? ORDER BY instance LIMIT ?",
            list_after=f"SELECT {COLUMNS} FROM {t} WHERE task = ? AND instance > ? ORDER BY instance LIMIT ?",
        )
