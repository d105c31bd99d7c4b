"""The PostgreSQL repository: every operation is one SQL statement on a pooled connection.

Batches travel as arrays (``unnest``) so that registering or completing many instances is one
round trip; asyncpg prepares each statement once per connection and caches it. Statements that set
a ``next_run`` also ``NOTIFY`` the table's channel in the same statement, so the wake-up is
delivered exactly when the change commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any, AsyncIterator, Sequence, TypeVar

import anyio
import asyncpg

from pyncette import options
from pyncette.errors import ConfigurationError
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
    from_micros,
    to_micros,
)
from pyncette.postgres import _connection, constants
from pyncette.postgres.schema import TableName, ensure_schema
from pyncette.repository import Repository, WakeupCallback

logger = logging.getLogger("pyncette.postgres")

K = TypeVar("K")

COLUMNS = "task, instance, spec, data, next_run, paused, locked_until, locked_by, fencing_token"


class Statements:
    """The SQL of one table, built once from its validated, quoted name."""

    def __init__(self, table: TableName, *, notify: bool) -> None:
        t = table.quoted

        def notifying(source: str, placeholder: str, channel: str) -> str:
            # A SELECT over the modified rows that sends one notification per scope; it is UNION-ed
            # into the statement's result so that it runs (unreferenced plain CTEs are skipped).
            if not notify:
                return ""
            return f"""
            UNION ALL
            SELECT {placeholder} FROM (
                SELECT pg_notify({channel},
                                 round(extract(epoch FROM min(next_run)) * 1000000)::bigint || ':' || task)
                FROM {source}
                WHERE NOT paused AND octet_length(task) <= {constants.MAX_NOTIFY_TASK_LENGTH}
                GROUP BY task
            ) AS notified"""

        # $1 task, $2 now, $3 limit, $4 owner, $5 locked_until, $6 now in microseconds[, $7 instance]
        claim = f"""
            WITH due AS (
                SELECT instance FROM {t}
                WHERE task = $1 AND next_run <= $2 AND NOT paused
                  AND (locked_until IS NULL OR locked_until <= $2)
                  {{instance}}
                ORDER BY next_run
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE {t} AS t
                SET locked_by = $4, locked_until = $5, fencing_token = GREATEST(t.fencing_token + 1, $6::bigint)
                -- Not a join with due: its generic plan (estimating LIMIT $3 at a tenth of the scope)
                -- hash-joins a scan of the whole table. A key lookup stays one whatever the estimates.
                WHERE t.task = $1 AND t.instance = ANY (ARRAY(SELECT instance FROM due))
                RETURNING t.*
            ), upcoming AS (
                SELECT LEAST(
                    (SELECT min(next_run) FROM {t} WHERE task = $1 AND NOT paused AND next_run > $2),
                    -- Leases of due instances expire too; only worth reading when the batch was not full,
                    -- and then those rows are few: the ones other workers are running.
                    CASE WHEN (SELECT count(*) FROM claimed) < $3 THEN
                        (SELECT min(locked_until) FROM {t}
                         WHERE task = $1 AND NOT paused AND next_run <= $2 AND locked_until > $2)
                    END
                ) AS next_due
            )
            SELECT claimed.*, upcoming.next_due
            FROM upcoming LEFT JOIN claimed ON true
            ORDER BY claimed.next_run, claimed.instance
        """
        self.claim = claim.format(instance="")
        self.claim_one = claim.format(instance="AND instance = $7")

        upsert = f"""
            INSERT INTO {t} AS t (task, instance, spec, data, next_run)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
            ON CONFLICT (task, instance) DO UPDATE SET
                spec = EXCLUDED.spec,
                next_run = CASE WHEN t.spec = EXCLUDED.spec THEN t.next_run ELSE EXCLUDED.next_run END
                {{force}}
            RETURNING t.task, t.instance, t.next_run, t.paused, t.xmax = 0 AS created
        """
        # xmax is 0 on a row version this statement inserted, and set on one it updated.
        register = f"""
            WITH upserted AS ({{upsert}})
            SELECT task, instance, created FROM upserted
            {notifying("upserted", "NULL, NULL, NULL", "$7")}
        """
        # $1..$5 arrays of task, instance, spec, data, next_run; $6 now; $7 channel
        self.register = register.format(upsert=upsert.format(force="WHERE t.locked_until IS NULL OR t.locked_until <= $6"))
        # $1..$5 as above; $6 now in microseconds; $7 channel. A forced update takes the lock away.
        forced = ", locked_by = NULL, locked_until = NULL, fencing_token = GREATEST(t.fencing_token + 1, $6::bigint)"
        self.register_forced = register.format(upsert=upsert.format(force=forced))

        # $1..$6 arrays of task, instance, owner, token, next_run (NULL deletes), data; $7 channel
        complete = f"""
            WITH c AS (
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[])
                    WITH ORDINALITY AS c(task, instance, owner, token, next_run, data, ord)
            ), deleted AS (
                DELETE FROM {t} AS t USING c
                WHERE c.next_run IS NULL AND t.task = c.task AND t.instance = c.instance
                  AND t.locked_by = c.owner AND t.fencing_token = c.token
                RETURNING c.ord
            ), released AS (
                UPDATE {t} AS t SET next_run = c.next_run, data = c.data, locked_by = NULL, locked_until = NULL
                FROM c
                WHERE c.next_run IS NOT NULL AND t.task = c.task AND t.instance = c.instance
                  AND ((t.locked_by = c.owner AND t.fencing_token = c.token) {{replayed}})
                RETURNING c.ord, t.task, t.next_run, t.paused
            )
            SELECT ord FROM deleted
            UNION ALL
            SELECT ord FROM released
            {{replayed_deletions}}
            {notifying("released", "NULL", "$7")}
        """
        self.complete = complete.format(replayed="", replayed_deletions="")
        # After a connection died mid-statement, the lost attempt may have applied. A row released
        # by this very lease to exactly this next_run and data was released by it (only the lease
        # holder can release a row, and every later claim raises the token). A row to delete that is
        # gone was deleted by it, unless someone unregistered it meanwhile or it expired, was claimed
        # again and completed by another worker, all within the retry's second: counted as applied.
        self.complete_replay = complete.format(
            replayed="OR (t.locked_by IS NULL AND t.fencing_token = c.token AND t.next_run = c.next_run AND t.data = c.data)",
            replayed_deletions=f"""
            UNION ALL
            SELECT c.ord FROM c
            WHERE c.next_run IS NULL AND NOT EXISTS (SELECT FROM {t} AS t WHERE t.task = c.task AND t.instance = c.instance)""",
        )

        # $1 task, $2 instance, $3 owner, $4 token, $5 new locked_until
        self.extend = f"""
            UPDATE {t} SET locked_until = $5
            WHERE task = $1 AND instance = $2 AND locked_by = $3 AND fencing_token = $4
            RETURNING locked_until
        """
        # $1 task, $2 now: the claim's eligibility rule, read over the (task, next_run) due index.
        self.count_due = f"""
            SELECT count(*), min(GREATEST(next_run, locked_until)) FROM {t}
            WHERE task = $1 AND next_run <= $2 AND NOT paused AND (locked_until IS NULL OR locked_until <= $2)
        """
        self.get = f"SELECT {COLUMNS} FROM {t} WHERE task = $1 AND instance = $2"
        self.list_first = f"SELECT {COLUMNS} FROM {t} WHERE task = $1 ORDER BY instance LIMIT $2"
        self.list_after = f"SELECT {COLUMNS} FROM {t} WHERE task = $1 AND instance > $3 ORDER BY instance LIMIT $2"
        self.unregister = f"DELETE FROM {t} WHERE task = $1 AND instance = $2 RETURNING true"
        # $1 task, $2 instance, $3 paused, $4 next_run or NULL, $5 data or NULL; $6 channel
        self.set_paused = f"""
            WITH p AS (
                UPDATE {t} SET paused = $3, next_run = COALESCE($4::timestamptz, next_run), data = COALESCE($5::text, data)
                WHERE task = $1 AND instance = $2
                RETURNING task, next_run, paused
            )
            SELECT true FROM p
            {notifying("p", "NULL::boolean", "$6")}
        """


def _state(row: Any) -> TaskState:
    return TaskState(
        key=TaskKey(row["task"], row["instance"]),
        spec=row["spec"],
        data=row["data"],
        next_run=row["next_run"],
        paused=row["paused"],
        locked_until=row["locked_until"],
        locked_by=row["locked_by"],
        fencing_token=row["fencing_token"],
    )


def _rounds(keys: Sequence[K]) -> list[list[int]]:
    """Split positions into statements in which every key occurs at most once, keeping each key's order.

    One statement must not modify a row twice, so a batch naming a key twice runs as several
    statements, which also gives repeated items the meaning of applying them one after another.
    Statements hold at most :data:`~pyncette.postgres.constants.MAX_ROWS_PER_STATEMENT` items.
    """
    rounds: list[list[int]] = []
    seen: dict[K, int] = {}
    for position, key in enumerate(keys):
        depth = seen.get(key, 0)
        seen[key] = depth + 1
        if depth == len(rounds):
            rounds.append([])
        rounds[depth].append(position)
    size = constants.MAX_ROWS_PER_STATEMENT
    return [round_[start : start + size] for round_ in rounds for start in range(0, len(round_), size)]


class PostgresRepository(Repository):
    """A :class:`~pyncette.repository.Repository` in one PostgreSQL table."""

    def __init__(self, pool: Any, table: TableName, *, notify: bool = True) -> None:
        self._pool = pool
        self._table = table
        self._sql = Statements(table, notify=notify)
        self._closed = False
        # The channel is the last parameter of the notifying statements, which omit it when notify is off.
        self._channel: tuple[str, ...] = (table.channel,) if notify else ()
        self._callback: WakeupCallback | None = None
        # A plain asyncio task rather than a task group around the factory's ``yield``, which would
        # wrap the application's own exceptions in an ExceptionGroup. asyncpg needs asyncio anyway.
        self._listener: asyncio.Task[None] | None = None
        self._listener_scope = anyio.CancelScope()
        self._listening = False
        self._listen_generation = 0
        self._listen_changed = anyio.Event()

    @property
    def table(self) -> TableName:
        return self._table

    async def _run(self, operation: str, statement: Any, replay: Any = None) -> Any:
        """Run one statement with retries; see :func:`pyncette.postgres._connection.run`.

        Every operation may be retried after a connection died mid-statement: reads, extend_lease
        and set_paused are idempotent; a repeated claim at worst leaves the instances the lost
        attempt claimed locked until their lease expires (nobody runs them twice); a repeated
        register may report UPDATED for an instance the lost attempt created, and a repeated
        unregister False for one it deleted. Completions need a replay-aware variant.
        """
        return await _connection.run(self._pool, operation, statement, replay=replay or statement)

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        outcomes: list[RegisterOutcome] = [RegisterOutcome.LOCKED] * len(registrations)
        for round_ in _rounds([registration.key for registration in registrations]):
            # Keys are unique within a round, so running its forced ones apart reorders nothing.
            for forced in (False, True):
                positions = [i for i in round_ if registrations[i].force is forced]
                if not positions:
                    continue
                batch = [registrations[i] for i in positions]
                rows = await self._run(
                    "register", lambda conn, batch=batch, forced=forced: self._register(conn, now, batch, forced)
                )
                created = {(row["task"], row["instance"]): row["created"] for row in rows if row["task"] is not None}
                for i in positions:
                    key = registrations[i].key
                    if (key.task, key.instance) in created:
                        outcomes[i] = RegisterOutcome.CREATED if created[key.task, key.instance] else RegisterOutcome.UPDATED
        return outcomes

    async def _register(self, connection: Any, now: datetime.datetime, batch: list[Registration], forced: bool) -> Any:
        columns = (
            [reg.key.task for reg in batch],
            [reg.key.instance for reg in batch],
            [reg.spec for reg in batch],
            [reg.data for reg in batch],
            [reg.next_run for reg in batch],
        )
        if forced:
            return await connection.fetch(self._sql.register_forced, *columns, to_micros(now), *self._channel)
        return await connection.fetch(self._sql.register, *columns, now, *self._channel)

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        deleted = await self._run("unregister", lambda conn: conn.fetchval(self._sql.unregister, key.task, key.instance))
        return bool(deleted)

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
        locked_until = now + lease_duration
        arguments = (task, now, limit, owner, locked_until, to_micros(now))
        if instance is None:
            rows = await self._run("claim", lambda conn: conn.fetch(self._sql.claim, *arguments))
        else:
            rows = await self._run("claim", lambda conn: conn.fetch(self._sql.claim_one, *arguments, instance))
        claimed = []
        for row in rows:
            if row["task"] is None:
                continue
            state = _state(row)
            claimed.append(
                ClaimedTask(state=state, lease=Lease(owner=owner, token=state.fencing_token, locked_until=locked_until))
            )
        next_due = rows[0]["next_due"] if rows else None
        return ClaimResult(
            claimed=tuple(claimed),
            more=instance is None and len(claimed) >= limit,
            next_due=next_due,
        )

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        applied = [False] * len(completions)
        for round_ in _rounds([completion.key for completion in completions]):
            batch = [completions[i] for i in round_]
            rows = await self._run(
                "complete",
                lambda conn, batch=batch: self._complete(conn, self._sql.complete, batch),
                lambda conn, batch=batch: self._complete(conn, self._sql.complete_replay, batch),
            )
            for row in rows:
                if row["ord"] is not None:
                    applied[round_[row["ord"] - 1]] = True
        return applied

    async def _complete(self, connection: Any, sql: str, batch: list[Completion]) -> Any:
        return await connection.fetch(
            sql,
            [c.key.task for c in batch],
            [c.key.instance for c in batch],
            [c.lease.owner for c in batch],
            [c.lease.token for c in batch],
            [c.next_run for c in batch],
            [c.data for c in batch],
            *self._channel,
        )

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        locked_until = now + lease_duration
        # Idempotent: applying it twice leaves the same row and gives the same answer.
        stored = await self._run(
            "extend_lease",
            lambda conn: conn.fetchval(self._sql.extend, key.task, key.instance, lease.owner, lease.token, locked_until),
        )
        if stored is None:
            return None
        return Lease(owner=lease.owner, token=lease.token, locked_until=stored)

    async def server_time(self) -> datetime.datetime:
        # clock_timestamp(), unlike now(), is the time of the statement's execution, not of its transaction.
        moment = await self._run("server_time", lambda conn: conn.fetchval("SELECT clock_timestamp()"))
        return moment.astimezone(datetime.timezone.utc)  # type: ignore[no-any-return]

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        row = await self._run("count_due", lambda conn: conn.fetchrow(self._sql.count_due, task, now))
        return DueSummary(count=row[0], oldest=row[1])

    async def get_task(self, key: TaskKey) -> TaskState | None:
        row = await self._run("get_task", lambda conn: conn.fetchrow(self._sql.get, key.task, key.instance))
        return None if row is None else _state(row)

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        if limit < 1:
            raise ConfigurationError(f"list_tasks limit must be positive, not {limit}")
        if continuation is None:
            rows = await self._run("list_tasks", lambda conn: conn.fetch(self._sql.list_first, task, limit + 1))
        else:
            rows = await self._run("list_tasks", lambda conn: conn.fetch(self._sql.list_after, task, limit + 1, continuation))
        states = tuple(_state(row) for row in rows[:limit])
        return Page(states=states, continuation=states[-1].key.instance if len(rows) > limit else None)

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        rows = await self._run(
            "set_paused",
            lambda conn: conn.fetch(self._sql.set_paused, key.task, key.instance, paused, next_run, data, *self._channel),
        )
        return any(row[0] for row in rows)

    # Push wake-ups

    def set_wakeup_callback(self, callback: WakeupCallback) -> None:
        self._callback = callback
        if self._listener is None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen_until_closed(), name=f"pyncette.postgres listener on {self._table.qualified}"
            )

    async def _close(self) -> None:
        """Stop the listener, releasing its connection; the pool is the factory's business."""
        self._closed = True
        self._listener_scope.cancel()
        if self._listener is not None:
            await self._listener

    async def _listen_until_closed(self) -> None:
        with self._listener_scope:
            try:
                await self._listen()
            except Exception:
                logger.exception("PostgreSQL listener on %s stopped", self._table.channel)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        micros, separator, task = payload.partition(":")
        callback = self._callback
        if not separator or callback is None:
            return
        try:
            when = from_micros(int(micros))
        except ValueError:
            logger.warning("ignoring malformed notification on %s: %r", self._table.channel, payload[:100])
            return
        try:
            callback(task, when)
        except Exception:
            logger.exception("pyncette wake-up callback failed")

    def _set_listening(self, listening: bool) -> None:
        self._listening = listening
        if listening:
            self._listen_generation += 1
        self._listen_changed.set()
        self._listen_changed = anyio.Event()

    async def _wait_listening(self, after_generation: int = 0) -> int:
        """Wait until a listening connection newer than ``after_generation`` is up; return its generation.

        For tests: notifications sent before the listener is up are not received.
        """
        while not (self._listening and self._listen_generation > after_generation):
            await self._listen_changed.wait()
        return self._listen_generation

    async def _listen(self) -> None:
        """Hold a connection that LISTENs on the table's channel; reconnect whenever it is lost."""
        attempt = 0
        while True:
            try:
                async with self._pool.acquire() as connection:
                    lost = anyio.Event()

                    def on_termination(_connection: Any, lost: anyio.Event = lost) -> None:
                        lost.set()

                    connection.add_termination_listener(on_termination)
                    await connection.add_listener(self._table.channel, self._on_notification)
                    if attempt:
                        logger.info("PostgreSQL listener on %s reconnected", self._table.channel)
                    attempt = 0
                    self._set_listening(True)
                    try:
                        while not lost.is_set():
                            with anyio.move_on_after(constants.LISTENER_HEALTHCHECK_INTERVAL):
                                await lost.wait()
                            if not lost.is_set():
                                await connection.execute("SELECT 1", timeout=constants.CONNECT_TIMEOUT)
                    finally:
                        self._set_listening(False)
                        # A terminated connection has already gone back to the pool, listeners and all.
                        with contextlib.suppress(asyncpg.InterfaceError):
                            connection.remove_termination_listener(on_termination)
                            if not connection.is_closed():
                                # Shielded: this also runs when the repository closes and cancels us.
                                with anyio.move_on_after(constants.CLOSE_TIMEOUT, shield=True), contextlib.suppress(Exception):
                                    await connection.remove_listener(self._table.channel, self._on_notification)
            except Exception as exc:
                # Whatever went wrong, the listener must come back: wake-ups are otherwise silently lost.
                delay = _connection.backoff(attempt, constants.LISTENER_MAX_DELAY)
                logger.warning(
                    "PostgreSQL listener on %s lost its connection, reconnecting in %.2fs: %s",
                    self._table.channel,
                    delay,
                    _connection.describe(exc),
                )
                attempt += 1
                await anyio.sleep(delay)
                continue
            # The connection closed without an error being raised: reconnect at once, then back off.
            logger.warning("PostgreSQL listener on %s lost its connection, reconnecting", self._table.channel)
            attempt += 1


def _pool_size(value: object, concurrency_limit: object) -> int:
    if value is None:
        limit = concurrency_limit if isinstance(concurrency_limit, int) and not isinstance(concurrency_limit, bool) else 1
        return max(2, min(limit, constants.MAX_DEFAULT_POOL_SIZE))
    return options.integer("postgres_pool_size", value, minimum=1)


@contextlib.asynccontextmanager
async def postgres_repository(
    *,
    postgres_url: str = constants.DEFAULT_URL,
    postgres_table_name: str = constants.DEFAULT_TABLE_NAME,
    postgres_skip_table_create: bool = False,
    postgres_pool_size: int | None = None,
    postgres_pool: Any = None,
    postgres_notify: bool = True,
    concurrency_limit: int = 100,
    batch_size: int = 100,
    **_options: Any,
) -> AsyncIterator[PostgresRepository]:
    """Connect to PostgreSQL, make sure the table is ready, and yield a :class:`PostgresRepository`.

    Options are described in ``pyncette.postgres.plugin`` and the backend's documentation. A pool
    passed as ``postgres_pool`` is used as is and left open on exit; a pool this factory made is
    closed. Bad settings raise :class:`~pyncette.errors.ConfigurationError`,
    :class:`~pyncette.errors.SchemaVersionError` or :class:`~pyncette.errors.BackendError` before
    anything is yielded, naming the option and never a password.
    """
    del batch_size
    table = TableName.parse(postgres_table_name)
    size = _pool_size(postgres_pool_size, concurrency_limit)
    skip_create = options.flag("postgres_skip_table_create", postgres_skip_table_create)
    notify = options.flag("postgres_notify", postgres_notify)
    if postgres_pool is None:
        if not isinstance(postgres_url, str):
            raise ConfigurationError(f"option postgres_url must be a string, not {type(postgres_url).__name__}")
        pool = await _connection.create_pool(
            postgres_url, size + constants.LISTENER_CONNECTIONS, _connection.Secrets(postgres_url)
        )
    elif isinstance(postgres_pool, asyncpg.Pool):
        pool = postgres_pool
    else:
        raise ConfigurationError(f"option postgres_pool must be an asyncpg pool, not {type(postgres_pool).__name__}")
    try:
        await ensure_schema(pool, table, skip_create=skip_create)
        repository = PostgresRepository(pool, table, notify=notify)
        try:
            yield repository
        finally:
            with anyio.CancelScope(shield=True):
                await repository._close()
    finally:
        if postgres_pool is None:
            await _close(pool)


async def _close(pool: Any) -> None:
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(constants.CLOSE_TIMEOUT) as scope:
            await pool.close()
        if scope.cancelled_caught:
            logger.warning("closing the PostgreSQL pool timed out; terminating its connections")
            pool.terminate()
