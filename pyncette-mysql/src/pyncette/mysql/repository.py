"""The MySQL / MariaDB repository.

Each operation is one transaction sent as few multi-statement scripts as its logic allows (aiomysql
always enables multi-statements): a claim is two round trips whatever the batch size, a batch of
registrations or completions is two round trips per :data:`~pyncette.mysql.constants.BATCH_MAX_ITEMS`.
Writes that depend on the stored state first lock the affected rows (``SELECT ... FOR UPDATE``,
``SKIP LOCKED`` for claims), decide in Python, then write every row with one statement each in
the same script as the ``COMMIT``. Every transaction runs at READ COMMITTED, so InnoDB takes no gap
locks and concurrent workers do not deadlock on ranges.

Failures: deadlocks, lock-wait timeouts and connection errors raised before anything could have
been written are retried with jittered back-off. When a connection drops while a claim's,
completion's or registration's ``COMMIT`` is in flight, the retry reads the rows (waiting for the
old transaction to end) to tell whether it landed; other writes of unknown outcome are idempotent.
"""

from __future__ import annotations

import datetime
import logging
import random
from typing import Any, Awaitable, Callable, Iterable, Iterator, Sequence, TypeVar

import anyio
import attrs

from pyncette.errors import BackendError, TaskDefinitionError
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
from pyncette.mysql import constants
from pyncette.repository import Repository

logger = logging.getLogger("pyncette.mysql")

T = TypeVar("T")

_COLUMNS = "task, instance, spec, data, next_run, paused, locked_until, locked_by, fencing_token"
_BEGIN = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION"
_CONTINUATION_PREFIX = "n:"
_Key = tuple[bytes, bytes]


def _micros(delta: datetime.timedelta) -> int:
    return delta // datetime.timedelta(microseconds=1)


def _key(key: TaskKey) -> _Key:
    task, instance = key.task.encode(), key.instance.encode()
    if len(task) > constants.MAX_TASK_BYTES:
        raise TaskDefinitionError(key.task, f"the MySQL backend stores task scopes of at most {constants.MAX_TASK_BYTES} bytes")
    if len(instance) > constants.MAX_INSTANCE_BYTES:
        raise TaskDefinitionError(key.task, f"instance name longer than {constants.MAX_INSTANCE_BYTES} bytes")
    return task, instance


def _keys_condition(keys: Iterable[_Key]) -> tuple[str, list[bytes]]:
    """``(task = ? AND instance IN (...)) OR ...``: a form both servers turn into primary-key ranges."""
    by_task: dict[bytes, list[bytes]] = {}
    for task, instance in keys:
        by_task.setdefault(task, []).append(instance)
    clauses, args = [], []
    for task, instances in by_task.items():
        clauses.append(f"(task = %s AND instance IN ({', '.join(['%s'] * len(instances))}))")
        args.append(task)
        args.extend(instances)
    return " OR ".join(clauses), args


def _state(row: Sequence[Any]) -> TaskState:
    task, instance, spec, data, next_run, paused, locked_until, locked_by, token = row
    return TaskState(
        key=TaskKey(bytes(task).decode(), bytes(instance).decode()),
        spec=bytes(spec).decode(),
        data=bytes(data).decode(),
        next_run=from_micros(next_run),
        paused=bool(paused),
        locked_until=None if locked_until is None else from_micros(locked_until),
        locked_by=None if locked_by is None else bytes(locked_by).decode(),
        fencing_token=int(token),
    )


def _batches(items: Sequence[T], size: Callable[[T], int]) -> Iterator[Sequence[T]]:
    start, total = 0, 0
    for index, item in enumerate(items):
        total += size(item)
        if index > start and (index - start >= constants.BATCH_MAX_ITEMS or total > constants.BATCH_MAX_BYTES):
            yield items[start:index]
            start, total = index, size(item)
    if start < len(items):
        yield items[start:]


def _literal(conn: Any, value: Any) -> str:
    """SQL literal of a parameter; bytes as hex, which needs no escaping and no connection charset."""
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return str(conn.escape(value))


def _error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("pymysql", "aiomysql")) or isinstance(exc, (OSError, EOFError, TimeoutError))


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, EOFError, TimeoutError)):
        return True
    return _is_driver_error(exc) and _error_code(exc) in constants.CONNECTION_ERRORS


def describe(exc: BaseException) -> str:
    """A driver error as ``code: message``; MySQL messages never echo passwords."""
    code = _error_code(exc)
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    message = args[1] if code is not None and len(args) > 1 else str(exc)
    return f"{code}: {message}" if code is not None else f"{type(exc).__name__}: {message}"


def is_encrypted(conn: Any) -> bool:
    """Whether ``conn`` runs over TLS: aiomysql silently stays in clear text when the server offers no TLS."""
    writer = getattr(conn, "_writer", None)
    return writer is not None and writer.get_extra_info("ssl_object") is not None


class _Attempt:
    """Progress of an operation across its tries.

    ``writing``: this try sent a write or ``COMMIT`` whose outcome is unknown if the connection
    drops. ``plan``: what that write was meant to do; an operation that sets it can tell on its
    next try whether the lost ``COMMIT`` landed (its locking read waits for the old transaction to
    end), so losing the reply is recoverable instead of an error of unknown outcome.
    """

    def __init__(self) -> None:
        self.writing = False
        self.plan: Any = None


@attrs.define
class _Row:
    """The columns a registration decides on; equality compares exactly these."""

    spec: bytes | None
    next_run: int
    locked_until: int | None
    locked_by: bytes | None
    token: int
    data: bytes = attrs.field(default=b"", eq=False)
    created: bool = attrs.field(default=False, eq=False)
    dirty: bool = attrs.field(default=False, eq=False)


class MySQLRepository(Repository):
    """A :class:`~pyncette.repository.Repository` in one InnoDB table, accessed through an aiomysql pool.

    ``pool`` is used, never closed; the factory :func:`pyncette.mysql.mysql_repository` owns the
    pools it creates. ``table`` must already be a validated identifier with the current schema.
    """

    def __init__(self, pool: Any, table: str, *, require_tls: bool = False) -> None:
        if not constants.TABLE_NAME_PATTERN.fullmatch(table):
            raise ValueError(f"invalid table name {table!r}")
        self._pool = pool
        self._table = f"`{table}`"
        self._require_tls = require_tls

    async def _acquire(self) -> Any:
        conn = await self._pool.acquire()
        if self._require_tls and not is_encrypted(conn):
            conn.close()
            self._pool.release(conn)
            raise BackendError("a MySQL connection was opened without TLS although mysql_ssl is set")
        return conn

    async def _run(self, operation: Callable[[Any, _Attempt], Awaitable[T]], *, idempotent: bool, what: str) -> T:
        """Run ``operation(conn, attempt)`` on a pooled connection, retrying where that is safe."""
        delay = constants.RETRY_BASE_DELAY
        attempt = _Attempt()
        for attempt_number in range(1, constants.RETRY_ATTEMPTS + 1):
            attempt.writing = False
            try:
                conn = await self._acquire()
            except Exception as exc:
                if isinstance(exc, BackendError) or not _is_driver_error(exc):
                    raise
                error: BaseException = exc
                retry = True
            else:
                try:
                    return await operation(conn, attempt)
                except BaseException as exc:
                    if attempt.writing and not _is_connection_error(exc):
                        attempt.plan = None  # the server refused the write: the transaction was rolled back
                    safe = idempotent or not attempt.writing or attempt.plan is not None
                    retry = await self._settle(conn, exc, safe)
                    if not _is_driver_error(exc) or isinstance(exc, anyio.get_cancelled_exc_class()):
                        raise
                    error = exc
                finally:
                    self._pool.release(conn)
            if not retry or attempt_number == constants.RETRY_ATTEMPTS:
                raise BackendError(f"MySQL {what} failed: {describe(error)}") from error
            logger.warning("MySQL %s failed (%s), retrying (attempt %d)", what, describe(error), attempt_number)
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, constants.RETRY_MAX_DELAY)
        raise AssertionError("unreachable")

    @staticmethod
    async def _settle(conn: Any, exc: BaseException, safe_to_retry: bool) -> bool:
        """Leave ``conn`` reusable or closed after ``exc``; return whether retrying is safe."""
        code = _error_code(exc)
        if _is_driver_error(exc) and not _is_connection_error(exc) and not conn.closed:
            try:
                with anyio.CancelScope(shield=True):
                    await conn.rollback()
            except Exception:
                conn.close()
            # The server refused a statement of an uncommitted transaction: nothing was applied.
            return code in constants.TRANSIENT_SERVER_ERRORS or code == constants.ER_DUP_ENTRY
        # A lost, cancelled or broken session may hold unread results: never hand it out again.
        conn.close()
        return _is_connection_error(exc) and safe_to_retry

    @staticmethod
    async def _script(conn: Any, sql: str, args: Sequence[Any] = ()) -> list[tuple[list[tuple[Any, ...]], int]]:
        """Send ``sql`` (one or more statements) in one round trip; return each statement's rows and row count."""
        results = []
        query = sql % tuple(_literal(conn, arg) for arg in args)
        async with conn.cursor() as cursor:
            await cursor.execute(query)
            results.append((list(await cursor.fetchall()), cursor.rowcount))
            while await cursor.nextset():
                results.append((list(await cursor.fetchall()), cursor.rowcount))
        return results

    @staticmethod
    def _end(conn: Any) -> str:
        """Terminator of a script of single statements: a session without autocommit must commit."""
        return "" if conn.get_autocommit() else "; COMMIT"

    # register_tasks

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        outcomes: list[RegisterOutcome] = []
        for batch in _batches(registrations, lambda reg: len(reg.spec) + len(reg.data)):
            keys = [_key(reg.key) for reg in batch]

            async def register(
                conn: Any, attempt: _Attempt, batch: Sequence[Registration] = batch, keys: list[_Key] = keys
            ) -> list[RegisterOutcome]:
                return await self._register_batch(conn, attempt, now, batch, keys)

            outcomes.extend(await self._run(register, idempotent=False, what="register_tasks"))
        return outcomes

    async def _register_batch(
        self, conn: Any, attempt: _Attempt, now: datetime.datetime, batch: Sequence[Registration], keys: list[_Key]
    ) -> list[RegisterOutcome]:
        now_us = to_micros(now)
        condition, key_args = _keys_condition(keys)
        select = (
            f"SELECT task, instance, spec, next_run, locked_until, locked_by, fencing_token FROM {self._table} "
            f"FORCE INDEX (PRIMARY) WHERE {condition} FOR UPDATE"
        )
        results = await self._script(conn, f"{_BEGIN}; {select}", key_args)
        rows = {(bytes(r[0]), bytes(r[1])): _Row(bytes(r[2]), r[3], r[4], r[5], r[6]) for r in results[-1][0]}
        if attempt.plan is not None:
            planned_outcomes, planned_rows = attempt.plan
            if all(rows.get(key) == row for key, row in planned_rows.items()):
                await self._script(conn, "COMMIT")  # the previous try committed before its reply was lost
                return list(planned_outcomes)
            attempt.plan = None
        outcomes = []
        for reg, key in zip(batch, keys, strict=True):
            spec = reg.spec.encode()
            row = rows.get(key)
            if row is None:
                rows[key] = _Row(spec, to_micros(reg.next_run), None, None, 0, data=reg.data.encode(), created=True)
                outcomes.append(RegisterOutcome.CREATED)
            elif row.locked_until is not None and row.locked_until > now_us and not reg.force:
                outcomes.append(RegisterOutcome.LOCKED)
            else:
                if row.spec != spec:
                    row.spec, row.next_run = spec, to_micros(reg.next_run)
                if reg.force:
                    row.locked_by = row.locked_until = None
                    row.token = fencing_token_after(row.token, now)
                row.dirty = True
                outcomes.append(RegisterOutcome.UPDATED)
        statements: list[str] = []
        args: list[Any] = []
        created = [(key, row) for key, row in rows.items() if row.created]
        if created:
            statements.append(
                f"INSERT INTO {self._table} (task, instance, spec, data, next_run, locked_until, locked_by, fencing_token) "
                f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s, %s)'] * len(created))}"
            )
            for (task, instance), row in created:
                args.extend((task, instance, row.spec, row.data, row.next_run, row.locked_until, row.locked_by, row.token))
        for (task, instance), row in rows.items():
            if row.dirty and not row.created:
                statements.append(
                    f"UPDATE {self._table} SET spec = %s, next_run = %s, locked_until = %s, locked_by = %s, fencing_token = %s "
                    "WHERE task = %s AND instance = %s"
                )
                args.extend((row.spec, row.next_run, row.locked_until, row.locked_by, row.token, task, instance))
        attempt.writing = len(statements) > 0
        statements.append("COMMIT")
        written = {
            key: _Row(row.spec, row.next_run, row.locked_until, row.locked_by, row.token)
            for key, row in rows.items()
            if row.dirty or row.created
        }
        attempt.plan = (outcomes, written) if attempt.writing else None
        await self._script(conn, "; ".join(statements), args)
        return outcomes

    # unregister_task

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        task, instance = _key(key)

        async def unregister(conn: Any, attempt: _Attempt) -> bool:
            attempt.writing = True
            sql = f"DELETE FROM {self._table} WHERE task = %s AND instance = %s{self._end(conn)}"
            return (await self._script(conn, sql, (task, instance)))[0][1] > 0

        # Idempotent in effect; a retry after a lost reply may report False for a row it deleted.
        return await self._run(unregister, idempotent=True, what="unregister_task")

    # claim_due

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
        task_b, _ = _key(TaskKey(task))
        now_us, until_us = to_micros(now), to_micros(now) + _micros(lease_duration)
        owner_b = owner.encode()
        if instance is None:
            select = (
                f"SELECT {_COLUMNS} FROM {self._table} FORCE INDEX ({constants.DUE_INDEX}) "
                "WHERE task = %s AND due_at <= %s ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED"
            )
            select_args: tuple[Any, ...] = (task_b, now_us, limit)
        else:
            select = (
                f"SELECT {_COLUMNS} FROM {self._table} FORCE INDEX (PRIMARY) "
                "WHERE task = %s AND instance = %s AND due_at <= %s FOR UPDATE SKIP LOCKED"
            )
            select_args = (task_b, _key(TaskKey(task, instance))[1], now_us)
        next_due_sql = (
            f"SELECT MIN(due_at) FROM {self._table} FORCE INDEX ({constants.DUE_INDEX}) WHERE task = %s AND due_at > %s"
        )

        async def claim(conn: Any, attempt: _Attempt) -> ClaimResult:
            if attempt.plan is not None:
                recovered = await self._recover_claim(conn, attempt.plan, owner_b, until_us)
                attempt.plan = None
                if recovered is not None:
                    return recovered
            results = await self._script(conn, f"{_BEGIN}; {select}; {next_due_sql}", (*select_args, task_b, now_us))
            rows, ((next_due,),) = results[-2][0], results[-1][0]
            claimed = []
            for row in rows:
                state = attrs.evolve(
                    _state(row),
                    locked_by=owner,
                    locked_until=from_micros(until_us),
                    fencing_token=fencing_token_after(int(row[8]), now),
                )
                assert state.locked_until is not None
                lease = Lease(owner=owner, token=state.fencing_token, locked_until=state.locked_until)
                claimed.append(ClaimedTask(state=state, lease=lease))
            if claimed:
                condition, args = _keys_condition((bytes(row[0]), bytes(row[1])) for row in rows)
                update = (
                    f"UPDATE {self._table} SET locked_by = %s, locked_until = %s, "
                    f"fencing_token = GREATEST(fencing_token + 1, %s) WHERE {condition}"
                )
            result = ClaimResult(
                claimed=tuple(claimed),
                more=instance is None and len(claimed) >= limit,
                next_due=None if next_due is None else from_micros(int(next_due)),
            )
            if claimed:
                attempt.writing = True
                attempt.plan = result
                await self._script(conn, f"{update}; COMMIT", (owner_b, until_us, now_us, *args))
            else:
                await self._script(conn, "COMMIT")
            return result

        return await self._run(claim, idempotent=False, what="claim_due")

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        """One aggregate over the due range of the ``(task, due_at)`` index (a covering range scan)."""
        task_b, _ = _key(TaskKey(task))

        async def count(conn: Any, attempt: _Attempt) -> DueSummary:
            sql = (
                f"SELECT COUNT(*), MIN(due_at) FROM {self._table} FORCE INDEX ({constants.DUE_INDEX}) "
                f"WHERE task = %s AND due_at <= %s{self._end(conn)}"
            )
            ((total, oldest),) = (await self._script(conn, sql, (task_b, to_micros(now))))[0][0]
            return DueSummary(count=int(total), oldest=None if oldest is None else from_micros(int(oldest)))

        return await self._run(count, idempotent=True, what="count_due")

    async def _recover_claim(self, conn: Any, planned: ClaimResult, owner: bytes, until_us: int) -> ClaimResult | None:
        """The planned claims that a previous try committed before its reply was lost, or ``None``."""
        keys = [_key(claimed.state.key) for claimed in planned.claimed]
        condition, args = _keys_condition(keys)
        select = (
            f"SELECT task, instance, locked_by, locked_until, fencing_token FROM {self._table} "
            f"FORCE INDEX (PRIMARY) WHERE {condition} FOR UPDATE"
        )
        rows = (await self._script(conn, f"{_BEGIN}; {select}; COMMIT", args))[-2][0]
        stored = {(bytes(r[0]), bytes(r[1])): (None if r[2] is None else bytes(r[2]), r[3], int(r[4])) for r in rows}
        ours = tuple(
            claimed
            for claimed, key in zip(planned.claimed, keys, strict=True)
            if stored.get(key) == (owner, until_us, claimed.lease.token)
        )
        return attrs.evolve(planned, claimed=ours) if ours else None

    # complete_tasks

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        applied: list[bool] = []
        for batch in _batches(completions, lambda completion: len(completion.data)):
            keys = [_key(completion.key) for completion in batch]

            async def complete(
                conn: Any, attempt: _Attempt, batch: Sequence[Completion] = batch, keys: list[_Key] = keys
            ) -> list[bool]:
                return await self._complete_batch(conn, attempt, batch, keys)

            applied.extend(await self._run(complete, idempotent=False, what="complete_tasks"))
        return applied

    async def _complete_batch(self, conn: Any, attempt: _Attempt, batch: Sequence[Completion], keys: list[_Key]) -> list[bool]:
        condition, key_args = _keys_condition(keys)
        select = (
            f"SELECT task, instance, locked_by, fencing_token, next_run FROM {self._table} "
            f"FORCE INDEX (PRIMARY) WHERE {condition} FOR UPDATE"
        )
        results = await self._script(conn, f"{_BEGIN}; {select}", key_args)
        holders: dict[_Key, tuple[bytes | None, int]] = {
            (bytes(r[0]), bytes(r[1])): (None if r[2] is None else bytes(r[2]), int(r[3])) for r in results[-1][0]
        }
        if attempt.plan is not None:
            next_runs = {(bytes(r[0]), bytes(r[1])): int(r[4]) for r in results[-1][0]}
            if self._completed(attempt.plan, batch, keys, holders, next_runs):
                await self._script(conn, "COMMIT")  # the previous try committed before its reply was lost
                return list(attempt.plan)
            attempt.plan = None
        deletes: list[_Key] = []
        updates: dict[_Key, Completion] = {}
        applied = []
        for completion, key in zip(batch, keys, strict=True):
            holder = holders.get(key)
            ok = holder is not None and holder == (completion.lease.owner.encode(), completion.lease.token)
            applied.append(ok)
            if not ok:
                continue
            if completion.next_run is None:
                del holders[key]
                deletes.append(key)
            else:
                holders[key] = (None, completion.lease.token)
                updates[key] = completion
        statements: list[str] = []
        args: list[Any] = []
        if deletes:
            condition, delete_args = _keys_condition(deletes)
            statements.append(f"DELETE FROM {self._table} WHERE {condition}")
            args.extend(delete_args)
        for (task, instance), completion in updates.items():
            assert completion.next_run is not None
            statements.append(
                f"UPDATE {self._table} SET next_run = %s, data = %s, locked_by = NULL, locked_until = NULL "
                "WHERE task = %s AND instance = %s"
            )
            args.extend((to_micros(completion.next_run), completion.data.encode(), task, instance))
        attempt.writing = len(statements) > 0
        statements.append("COMMIT")
        attempt.plan = applied if attempt.writing else None
        await self._script(conn, "; ".join(statements), args)
        return applied

    @staticmethod
    def _completed(
        planned: list[bool],
        batch: Sequence[Completion],
        keys: list[_Key],
        holders: dict[_Key, tuple[bytes | None, int]],
        next_runs: dict[_Key, int],
    ) -> bool:
        """Whether the rows show every planned completion applied (the transaction is all or nothing)."""
        for completion, key, applied in zip(batch, keys, planned, strict=True):
            if not applied:
                continue
            holder = holders.get(key)
            if completion.next_run is None:
                done = holder is None
            else:
                done = holder == (None, completion.lease.token) and next_runs.get(key) == to_micros(completion.next_run)
            if not done:
                return False
        return True

    # extend_lease

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        task, instance = _key(key)
        until_us = to_micros(now) + _micros(lease_duration)
        match = "WHERE task = %s AND instance = %s AND locked_by = %s AND fencing_token = %s"
        match_args = (task, instance, lease.owner.encode(), lease.token)
        sql = (
            f"{_BEGIN}; UPDATE {self._table} SET locked_until = %s {match}; "
            f"SELECT locked_until FROM {self._table} {match}; COMMIT"
        )

        async def extend(conn: Any, attempt: _Attempt) -> Lease | None:
            attempt.writing = True
            rows = (await self._script(conn, sql, (until_us, *match_args, *match_args)))[-2][0]
            if not rows or rows[0][0] != until_us:
                return None
            return attrs.evolve(lease, locked_until=from_micros(until_us))

        return await self._run(extend, idempotent=True, what="extend_lease")

    # get_task / list_tasks

    async def server_time(self) -> datetime.datetime:
        async def read(conn: Any, attempt: _Attempt) -> datetime.datetime:
            rows = (await self._script(conn, f"SELECT UTC_TIMESTAMP(6){self._end(conn)}"))[0][0]
            moment: datetime.datetime = rows[0][0]
            return moment.replace(tzinfo=datetime.timezone.utc)

        return await self._run(read, idempotent=True, what="server_time")

    async def get_task(self, key: TaskKey) -> TaskState | None:
        task, instance = _key(key)

        async def get(conn: Any, attempt: _Attempt) -> TaskState | None:
            sql = f"SELECT {_COLUMNS} FROM {self._table} WHERE task = %s AND instance = %s{self._end(conn)}"
            rows = (await self._script(conn, sql, (task, instance)))[0][0]
            return _state(rows[0]) if rows else None

        return await self._run(get, idempotent=True, what="get_task")

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        task_b, _ = _key(TaskKey(task))
        args: tuple[Any, ...] = (task_b,)
        after = ""
        if continuation is not None:
            if not continuation.startswith(_CONTINUATION_PREFIX):
                raise ValueError(f"invalid continuation token {continuation!r}")
            after = " AND instance > %s"
            args += (continuation[len(_CONTINUATION_PREFIX) :].encode(),)

        async def list_page(conn: Any, attempt: _Attempt) -> Page:
            sql = (
                f"SELECT {_COLUMNS} FROM {self._table} FORCE INDEX (PRIMARY) WHERE task = %s{after} "
                f"ORDER BY instance LIMIT %s{self._end(conn)}"
            )
            rows = (await self._script(conn, sql, (*args, limit + 1)))[0][0]
            states = tuple(_state(row) for row in rows[:limit])
            if len(rows) <= limit or not states:
                return Page(states=states)
            return Page(states=states, continuation=_CONTINUATION_PREFIX + states[-1].key.instance)

        return await self._run(list_page, idempotent=True, what="list_tasks")

    # set_paused

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        task, instance = _key(key)
        next_us = None if next_run is None else to_micros(next_run)
        sql = (
            f"{_BEGIN}; UPDATE {self._table} SET paused = %s, next_run = COALESCE(%s, next_run), data = COALESCE(%s, data) "
            f"WHERE task = %s AND instance = %s; SELECT 1 FROM {self._table} WHERE task = %s AND instance = %s; COMMIT"
        )

        async def pause(conn: Any, attempt: _Attempt) -> bool:
            attempt.writing = True
            results = await self._script(conn, sql, (paused, next_us, data, task, instance, task, instance))
            return bool(results[-2][0])

        return await self._run(pause, idempotent=True, what="set_paused")
