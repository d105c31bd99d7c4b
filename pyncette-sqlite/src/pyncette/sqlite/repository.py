"""The SQLite repository: one aiosqlite connection per repository, shared safely by worker processes.

Every write is one ``BEGIN IMMEDIATE`` transaction, so it takes the database's write lock before
reading anything and never has to upgrade a read lock (the source of busy errors SQLite cannot
wait out). A busy or locked database is first waited out by SQLite's busy handler
(``sqlite_busy_timeout``) and then retried with jittered exponential back-off: a transaction that
failed that way was rolled back before its COMMIT, so it is known not to have been applied.
Operations of one repository are serialised by a lock, because a connection holds at most one
transaction; that is also how one ``:memory:`` database is shared by all the tasks of an app.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import sqlite3
from typing import Any, Awaitable, Callable, Iterable, Iterator, Sequence, TypeVar

import aiosqlite
import anyio
import attrs

from pyncette.errors import BackendError, PyncetteException, SchemaVersionError
from pyncette.model import (
    ClaimedTask,
    ClaimResult,
    Completion,
    DueSummary,
    Lease,
    Page,
    RegisterOutcome,
    Registration,
    TaskKey,
    TaskState,
    fencing_token_after,
    from_micros,
    to_micros,
)
from pyncette.repository import Repository
from pyncette.sqlite.constants import (
    BROKEN_CONNECTION_CODES,
    BUSY_BACKOFF_INITIAL,
    BUSY_BACKOFF_MAX,
    DEFAULT_BUSY_RETRIES,
    KEY_CHUNK,
    META_TABLE_NAME,
    SCHEMA_VERSION,
    SQLITE_BUSY,
    SQLITE_LOCKED,
    SQLITE_READONLY_DBMOVED,
)
from pyncette.sqlite.schema import Statements, meta_ddl

logger = logging.getLogger("pyncette.sqlite")

_NOT_REOPENABLE = (
    "it cannot be reopened (an in-memory database is gone with its connection; a connection passed in is the caller's)"
)

T = TypeVar("T")
Work = Callable[[aiosqlite.Connection], Awaitable[T]]
Opener = Callable[[], Awaitable[aiosqlite.Connection]]


def _micros(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


def _state(row: Sequence[Any]) -> TaskState:
    task, instance, spec, data, next_run, paused, locked_until, locked_by, token = row
    return TaskState(
        key=TaskKey(task, instance),
        spec=spec,
        data=data,
        next_run=from_micros(next_run),
        paused=bool(paused),
        locked_until=None if locked_until is None else from_micros(locked_until),
        locked_by=locked_by,
        fencing_token=token,
    )


def _lease_of(state: TaskState, owner: str, until: datetime.datetime) -> Lease:
    return Lease(owner=owner, token=state.fencing_token, locked_until=until)


def _chunks(items: Sequence[T], size: int = KEY_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_task(keys: Iterable[TaskKey]) -> dict[str, list[str]]:
    grouped: dict[str, dict[str, None]] = {}
    for key in keys:
        grouped.setdefault(key.task, {})[key.instance] = None
    return {task: list(instances) for task, instances in grouped.items()}


def _is_busy(error: BaseException) -> bool:
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    text = str(error).lower()  # Python 3.10 exposes no result code
    return "locked" in text or "busy" in text


def _is_broken(error: BaseException) -> bool:
    if isinstance(error, ValueError):  # aiosqlite: "Connection closed" / "no active connection"
        return True
    if isinstance(error, sqlite3.ProgrammingError):
        return "closed" in str(error).lower()
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in BROKEN_CONNECTION_CODES or code == SQLITE_READONLY_DBMOVED
    return isinstance(error, sqlite3.OperationalError) and "disk i/o" in str(error).lower()


class SqliteRepository(Repository):
    """A :class:`~pyncette.repository.Repository` in one table of an SQLite database.

    ``connection`` is used as given; ``opener`` (None for ``:memory:`` and for a connection the
    caller owns) makes a replacement when the connection turns out to be broken, so the next
    operation works again.

    :meth:`server_time` keeps the default ``None``: every worker of an SQLite database runs on the
    database's host and reads the same clock.
    """

    def __init__(
        self,
        connection: aiosqlite.Connection | None,
        *,
        table_name: str,
        description: str,
        opener: Opener | None = None,
        reopen: bool = True,
        owned: bool = True,
        busy_retries: int = DEFAULT_BUSY_RETRIES,
        backoff_initial: float = BUSY_BACKOFF_INITIAL,
        backoff_max: float = BUSY_BACKOFF_MAX,
    ) -> None:
        self.statements = Statements.for_table(table_name)
        self._connection = connection
        self._description = description
        self._opener = opener
        self._opened = connection is not None
        self._reopen = reopen and opener is not None
        self._owned = owned
        self._busy_retries = busy_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._lock = anyio.Lock()
        self._closed = False

    @property
    def connection(self) -> aiosqlite.Connection | None:
        """The connection in use, or None after it broke and before the next operation reopens it."""
        return self._connection

    async def aclose(self) -> None:
        """Close the connection if this repository opened it; a connection passed in stays open."""
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None and self._owned:
            with anyio.CancelScope(shield=True):
                await connection.close()

    # plumbing

    async def _connect(self) -> aiosqlite.Connection:
        if self._closed:
            raise BackendError(f"{self._description}: the repository is closed")
        if self._connection is not None:
            return self._connection
        if self._opener is None or (self._opened and not self._reopen):
            raise BackendError(f"{self._description}: the connection was closed; {_NOT_REOPENABLE}")
        if self._opened:
            logger.warning("%s: reopening the connection", self._description)
        self._connection = await self._opener()
        self._opened = True
        return self._connection

    async def _discard(self, connection: aiosqlite.Connection) -> None:
        if self._connection is connection:
            self._connection = None
        with anyio.CancelScope(shield=True):
            try:
                await connection.close()
            except (sqlite3.Error, ValueError):
                logger.debug("closing a broken connection failed", exc_info=True)

    async def _run(self, what: str, work: Work[T], *, write: bool) -> T:
        """Run ``work`` (in one immediate transaction when ``write``), retrying what is safe to retry."""
        attempt = 0
        reopened = False
        async with self._lock:
            while True:
                committing = False
                connection: aiosqlite.Connection | None = None
                try:
                    connection = await self._connect()
                    if not write:
                        return await work(connection)
                    try:
                        # Inside the try: if cancelled while queued, the rollback below still follows it.
                        await connection.execute("BEGIN IMMEDIATE")
                        result = await work(connection)
                        committing = True
                        await connection.commit()
                    except BaseException:
                        with anyio.CancelScope(shield=True):
                            await self._rollback(connection)
                        raise
                    return result
                except PyncetteException:
                    raise
                except (sqlite3.Error, ValueError) as error:
                    # A busy COMMIT leaves the transaction uncommitted (and rolled back above): safe to redo.
                    if _is_busy(error):
                        if attempt >= self._busy_retries:
                            raise BackendError(
                                f"{self._description}: {what} gave up after {attempt} retries on a busy database: {error}"
                            ) from error
                        attempt += 1
                        delay = random.uniform(0, min(self._backoff_max, self._backoff_initial * 2**attempt))
                        logger.debug("%s: %s found the database busy (attempt %d), retrying", self._description, what, attempt)
                        await anyio.sleep(delay)
                        continue
                    # Only a file database this repository opened can be replaced by a fresh connection.
                    if connection is not None and self._reopen and _is_broken(error):
                        await self._discard(connection)
                        # Before COMMIT nothing was applied, so one attempt on a fresh connection is safe.
                        if not committing and not reopened:
                            reopened = True
                            continue
                    hint = ""
                    if _is_broken(error) and not self._reopen:
                        hint = f"; {_NOT_REOPENABLE}"
                    raise BackendError(f"{self._description}: {what} failed: {error}{hint}") from error

    @staticmethod
    async def _rollback(connection: aiosqlite.Connection) -> None:
        try:
            await connection.rollback()
        except (sqlite3.Error, ValueError):
            logger.debug("rollback failed; the connection is discarded by the caller if it is broken", exc_info=True)

    @staticmethod
    async def _fetch(connection: aiosqlite.Connection, sql: str, parameters: Any = ()) -> list[sqlite3.Row]:
        return list(await connection.execute_fetchall(sql, parameters))

    @staticmethod
    async def _rowcount(connection: aiosqlite.Connection, sql: str, parameters: Any) -> int:
        cursor = await connection.execute(sql, parameters)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def _existing(
        self, connection: aiosqlite.Connection, sql: str, keys: Iterable[TaskKey]
    ) -> dict[TaskKey, tuple[Any, ...]]:
        found: dict[TaskKey, tuple[Any, ...]] = {}
        for task, instances in _by_task(keys).items():
            for chunk in _chunks(instances):
                placeholders = ", ".join("?" * len(chunk))
                for row in await self._fetch(connection, f"{sql}({placeholders})", (task, *chunk)):
                    found[TaskKey(task, row[0])] = tuple(row[1:])
        return found

    # schema

    async def prepare(self, *, create: bool) -> None:
        """Create or upgrade the schema (``create``), or only check that it is there and current."""
        # Reading first means a worker joining a busy database needs no write lock to start.
        if create and await self._run("schema check", self._current_version, write=False) == SCHEMA_VERSION:
            return
        if create:
            await self._run("schema creation", self._create_schema, write=True)
        else:
            await self._run("schema check", self._check_schema, write=False)

    async def _current_version(self, connection: aiosqlite.Connection) -> Any:
        s = self.statements
        if not await self._fetch(connection, s.table_exists, (META_TABLE_NAME,)):
            return None
        rows = await self._fetch(connection, s.read_version, (s.table,))
        return rows[0][0] if rows and await self._fetch(connection, s.table_exists, (s.table,)) else None

    async def _create_schema(self, connection: aiosqlite.Connection) -> None:
        s = self.statements
        await connection.execute(meta_ddl())
        rows = await self._fetch(connection, s.read_version, (s.table,))
        if not rows:
            if await self._fetch(connection, s.table_exists, (s.table,)):
                raise SchemaVersionError(
                    f"table {s.table!r} exists but has no pyncette schema version in {META_TABLE_NAME!r} "
                    "(a pyncette 1.x table or an unrelated one): choose another sqlite_table_name"
                )
            await connection.execute(s.create_table)
            await connection.execute(s.create_index)
            await connection.execute(s.write_version, (s.table, SCHEMA_VERSION))
            return
        self._check_version(rows[0][0])
        # A current version whose table or index went missing (dropped by hand) is simply rebuilt.
        await connection.execute(s.create_table)
        await connection.execute(s.create_index)

    async def _check_schema(self, connection: aiosqlite.Connection) -> None:
        s = self.statements
        if not await self._fetch(connection, s.table_exists, (s.table,)):
            raise SchemaVersionError(f"table {s.table!r} does not exist and sqlite_skip_table_create is set")
        rows = []
        if await self._fetch(connection, s.table_exists, (META_TABLE_NAME,)):
            rows = await self._fetch(connection, s.read_version, (s.table,))
        if not rows:
            raise SchemaVersionError(
                f"table {s.table!r} has no pyncette schema version in {META_TABLE_NAME!r}; "
                "create it as documented or unset sqlite_skip_table_create"
            )
        self._check_version(rows[0][0])

    def _check_version(self, version: Any) -> None:
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise SchemaVersionError(
                f"table {self.statements.table!r} has schema version {version!r}, this pyncette-sqlite uses "
                f"version {SCHEMA_VERSION}" + ("; upgrade pyncette-sqlite" if newer else "; no upgrade path exists")
            )

    # the contract

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        if not registrations:
            return []
        now_us = to_micros(now)
        s = self.statements

        async def work(connection: aiosqlite.Connection) -> list[RegisterOutcome]:
            stored = await self._existing(connection, s.existing_for_register, (r.key for r in registrations))
            # key -> locked?; replays the batch in order so repeated keys see their earlier effects.
            locked = {key: row[0] is not None and row[0] > now_us for key, row in stored.items()}
            outcomes: list[RegisterOutcome] = []
            inserts: list[tuple[Any, ...]] = []
            updates: list[dict[str, Any]] = []
            for reg in registrations:
                if reg.key not in locked:
                    inserts.append((reg.key.task, reg.key.instance, reg.spec, reg.data, to_micros(reg.next_run)))
                    locked[reg.key] = False
                    outcomes.append(RegisterOutcome.CREATED)
                elif locked[reg.key] and not reg.force:
                    outcomes.append(RegisterOutcome.LOCKED)
                else:
                    updates.append(
                        {
                            "task": reg.key.task,
                            "instance": reg.key.instance,
                            "spec": reg.spec,
                            "next_run": to_micros(reg.next_run),
                            "force": reg.force,
                            "now": now_us,
                        }
                    )
                    locked[reg.key] = locked[reg.key] and not reg.force
                    outcomes.append(RegisterOutcome.UPDATED)
            # Inserts first: a key created earlier in the batch can only be updated later in it.
            if inserts:
                await connection.executemany(s.insert, inserts)
            if updates:
                await connection.executemany(s.update_registration, updates)
            return outcomes

        return await self._run("register_tasks", work, write=True)

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        async def work(connection: aiosqlite.Connection) -> bool:
            return await self._rowcount(connection, self.statements.delete, (key.task, key.instance)) > 0

        return await self._run("unregister_task", work, write=True)

    async def claim_due(
        self,
        now: datetime.datetime,
        task: str,
        *,
        owner: str,
        lease_duration: datetime.timedelta,
        limit: int,
        instance: str | None = None,
    ) -> ClaimResult:
        now_us = to_micros(now)
        until = now + lease_duration
        s = self.statements
        parameters: dict[str, Any] = {"task": task, "now": now_us, "limit": limit}
        if instance is not None:
            parameters["instance"] = instance

        async def first_eligible(connection: aiosqlite.Connection) -> int | None:
            ((first,),) = await self._fetch(connection, s.first_eligible, (task,))
            return first  # type: ignore[no-any-return]

        # An idle poll is one read (one index seek), not a write transaction: workers polling an idle
        # database never queue for its write lock. A claim itself is always an immediate transaction.
        first = await self._run("claim_due", first_eligible, write=False)
        if first is None or first > now_us:
            return ClaimResult(claimed=(), next_due=None if first is None else from_micros(first))

        async def work(connection: aiosqlite.Connection) -> ClaimResult:
            states = await self._claim(connection, parameters, owner, now, until) if limit > 0 else []
            rows = await self._fetch(connection, s.next_due, (task, now_us))
            next_due = None if rows[0][0] is None else from_micros(rows[0][0])
            claimed = tuple(ClaimedTask(state=state, lease=_lease_of(state, owner, until)) for state in states)
            return ClaimResult(claimed=claimed, more=instance is None and len(claimed) == limit > 0, next_due=next_due)

        return await self._run("claim_due", work, write=True)

    async def _claim(
        self,
        connection: aiosqlite.Connection,
        parameters: dict[str, Any],
        owner: str,
        now: datetime.datetime,
        until: datetime.datetime,
    ) -> list[TaskState]:
        # SELECT then UPDATE inside the immediate transaction: RETURNING would lose the lease that
        # expired, and with it the eligibility order the claims are returned in.
        s = self.statements
        sql = s.claim_select if "instance" not in parameters else s.claim_instance_select
        rows = await self._fetch(connection, sql, parameters)
        states: list[TaskState] = []
        updates: list[tuple[Any, ...]] = []
        for row in rows:
            state = _state(row[1:])
            token = fencing_token_after(state.fencing_token, now)
            updates.append((owner, to_micros(until), token, row[0]))
            states.append(attrs.evolve(state, locked_by=owner, locked_until=until, fencing_token=token))
        if updates:
            await connection.executemany(s.claim_update, updates)
        return states

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        """One aggregate over the due range of the ``<table>_due`` index."""
        parameters = {"task": task, "now": to_micros(now)}

        async def work(connection: aiosqlite.Connection) -> DueSummary:
            ((count, oldest),) = await self._fetch(connection, self.statements.count_due, parameters)
            return DueSummary(count=count, oldest=None if oldest is None else from_micros(oldest))

        return await self._run("count_due", work, write=False)

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        if not completions:
            return []
        s = self.statements

        async def work(connection: aiosqlite.Connection) -> list[bool]:
            held = await self._existing(connection, s.existing_for_complete, (c.key for c in completions))
            results: list[bool] = []
            deletes: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            for completion in completions:
                lease = completion.lease
                applies = held.get(completion.key) == (lease.owner, lease.token)
                results.append(applies)
                if not applies:
                    continue
                where = (completion.key.task, completion.key.instance, lease.owner, lease.token)
                if completion.next_run is None:
                    deletes.append(where)
                    del held[completion.key]
                else:
                    updates.append((to_micros(completion.next_run), completion.data, *where))
                    held[completion.key] = (None, lease.token)
            if deletes:
                await connection.executemany(s.complete_delete, deletes)
            if updates:
                await connection.executemany(s.complete_update, updates)
            return results

        return await self._run("complete_tasks", work, write=True)

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        until = now + lease_duration
        parameters = (to_micros(until), key.task, key.instance, lease.owner, lease.token)

        async def work(connection: aiosqlite.Connection) -> bool:
            return await self._rowcount(connection, self.statements.extend, parameters) > 0

        if not await self._run("extend_lease", work, write=True):
            return None
        return Lease(owner=lease.owner, token=lease.token, locked_until=until)

    async def get_task(self, key: TaskKey) -> TaskState | None:
        async def work(connection: aiosqlite.Connection) -> TaskState | None:
            rows = await self._fetch(connection, self.statements.get, (key.task, key.instance))
            return _state(rows[0]) if rows else None

        return await self._run("get_task", work, write=False)

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        s = self.statements
        sql = s.list_first if continuation is None else s.list_after
        parameters = (task, limit + 1) if continuation is None else (task, continuation, limit + 1)

        async def work(connection: aiosqlite.Connection) -> Page:
            states = [_state(row) for row in await self._fetch(connection, sql, parameters)]
            page = tuple(states[:limit])
            more = len(states) > limit and bool(page)
            return Page(states=page, continuation=page[-1].key.instance if more else None)

        return await self._run("list_tasks", work, write=False)

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        parameters = (int(paused), _micros(next_run), data, key.task, key.instance)

        async def work(connection: aiosqlite.Connection) -> bool:
            return await self._rowcount(connection, self.statements.pause, parameters) > 0

        return await self._run("set_paused", work, write=True)


def describe(database: str | os.PathLike[str] | None, table: str) -> str:
    """How messages name the store: the option values, never anything secret (SQLite has no secrets)."""
    where = "sqlite_connection=<given>" if database is None else f"sqlite_database={os.fspath(database)!r}"
    return f"sqlite ({where}, sqlite_table_name={table!r})"
