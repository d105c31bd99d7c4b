"""Pools, dropped connections, statement batching and push wake-ups of the PostgreSQL backend."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, AsyncIterator, Iterator

import anyio
import asyncpg
import pytest

from pyncette import Pyncette
from pyncette.errors import BackendError
from pyncette.model import Completion, RegisterOutcome, Registration, TaskKey
from pyncette.postgres import constants, postgres_repository
from tests.backends.postgres.conftest import server_address
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def registration(scope: str, instance: str, next_run: datetime.datetime = T0, force: bool = False) -> Registration:
    return Registration(key=TaskKey(scope, instance), spec="{}", data="{}", next_run=next_run, force=force)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    with TcpProxy(*server_address()) as proxy:
        yield proxy


def through(proxy: TcpProxy, postgres_url: str) -> str:
    host, port = server_address()
    return postgres_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")


class QueryCounter:
    """Counts the statements that reach the server on the table under test, via asyncpg's query loggers."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.queries: list[str] = []

    async def init(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self.log)

    def log(self, record: Any) -> None:
        if f'"{self.table_name}"' in record.query:
            self.queries.append(record.query)

    def take(self) -> list[str]:
        queries, self.queries = self.queries, []
        return queries


@pytest.fixture
async def counted_pool(postgres_url: str, table_name: str) -> AsyncIterator[tuple[asyncpg.Pool, QueryCounter]]:
    counter = QueryCounter(table_name)
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=3, init=counter.init)
    try:
        yield pool, counter
    finally:
        await pool.close()


async def test_pool_passed_in_is_used_and_not_closed(counted_pool: tuple[asyncpg.Pool, QueryCounter], table_name: str) -> None:
    pool, counter = counted_pool
    async with postgres_repository(postgres_pool=pool, postgres_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
    assert not pool.is_closing()
    assert await pool.fetchval(f'SELECT count(*) FROM "{table_name}"') == 1
    assert counter.take()


async def test_pool_made_by_the_backend_is_closed(postgres_url: str, table_name: str) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        pool = repository._pool
        assert not pool.is_closing()
    assert pool.is_closing()


async def test_batches_are_one_statement_each(counted_pool: tuple[asyncpg.Pool, QueryCounter], table_name: str) -> None:
    pool, counter = counted_pool
    async with postgres_repository(postgres_pool=pool, postgres_table_name=table_name) as repository:
        counter.take()
        outcomes = await repository.register_tasks(T0, [registration("s", f"i{i:04d}") for i in range(500)])
        assert len(outcomes) == 500
        assert len(counter.take()) == 1

        claimed = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=200)).claimed
        assert len(claimed) == 200
        assert len(counter.take()) == 1

        completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, completions) == [True] * 200
        assert len(counter.take()) == 1

        # Forced and unforced registrations go as one statement per kind.
        await repository.register_tasks(T0, [registration("s", "i0001"), registration("s", "i0002", force=True)] * 1)
        assert len(counter.take()) == 2

        # One statement cannot update a row twice: a repeated key needs one more round, applied in order.
        (again,) = (await repository.claim_due(T0 + SECOND, "s", owner="w", lease_duration=LEASE, limit=1)).claimed
        counter.take()
        twice = [Completion(key=again.state.key, lease=again.lease, next_run=T0 + 9 * SECOND, data="{}")] * 2
        assert await repository.complete_tasks(T0 + SECOND, twice) == [True, False]
        assert len(counter.take()) == 2


async def test_repeated_keys_in_one_batch_apply_in_order(postgres_url: str, table_name: str) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        key = TaskKey("s", "a")
        await repository.register_tasks(T0, [registration("s", "a")])
        await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)
        forced = Registration(key=key, spec='{"v": 2}', data="{}", next_run=T0, force=True)
        plain = Registration(key=key, spec='{"v": 3}', data="{}", next_run=T0)
        # The forced one takes the lock away first, so the plain one after it is applied too.
        assert await repository.register_tasks(T0, [forced, plain]) == [RegisterOutcome.UPDATED] * 2
        state = await repository.get_task(key)
        assert state is not None
        assert state.spec == '{"v": 3}'


async def test_very_large_batches_are_split(
    counted_pool: tuple[asyncpg.Pool, QueryCounter], table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, counter = counted_pool
    monkeypatch.setattr(constants, "MAX_ROWS_PER_STATEMENT", 40)
    async with postgres_repository(postgres_pool=pool, postgres_table_name=table_name) as repository:
        counter.take()
        outcomes = await repository.register_tasks(T0, [registration("s", f"i{i:04d}") for i in range(100)])
        assert outcomes == [RegisterOutcome.CREATED] * 100
        assert len(counter.take()) == 3


async def test_application_errors_pass_through_unchanged(postgres_url: str, table_name: str) -> None:
    async def app() -> None:
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
            repository.set_wakeup_callback(Wakeups())
            await repository._wait_listening()
            raise ValueError("from the app")

    # Not wrapped in an ExceptionGroup by the backend's listener.
    with pytest.raises(ValueError, match="from the app"):
        await app()


async def test_dropped_connections_are_replaced_by_the_next_operation(
    proxy: TcpProxy, postgres_url: str, table_name: str
) -> None:
    async with postgres_repository(
        postgres_url=through(proxy, postgres_url), postgres_table_name=table_name, postgres_pool_size=3
    ) as repository:
        await repository.register_tasks(T0, [registration("s", f"i{i}") for i in range(10)])
        assert proxy.cut() >= 1
        # Every kind of operation works on the first try after the cut, including the non-idempotent ones.
        claimed = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=4)).claimed
        assert len(claimed) == 4
        proxy.cut()
        completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, completions) == [True] * 4
        proxy.cut()
        assert len((await repository.list_tasks("s", limit=100)).states) == 6
        assert proxy.connections >= 4


async def test_unreachable_store_raises_backend_error_then_recovers(proxy: TcpProxy, postgres_url: str, table_name: str) -> None:
    async with postgres_repository(postgres_url=through(proxy, postgres_url), postgres_table_name=table_name) as repository:
        await repository.register_tasks(T0, [registration("s", "a")])
        proxy.down("refuse")
        with anyio.fail_after(20), pytest.raises(BackendError, match="claim"):
            await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)
        proxy.up()
        assert len((await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)).claimed) == 1


class Wakeups:
    def __init__(self) -> None:
        self.received: list[tuple[str, datetime.datetime]] = []
        self._changed = anyio.Event()

    def __call__(self, task: str, when: datetime.datetime) -> None:
        self.received.append((task, when))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, task: str) -> list[datetime.datetime]:
        return [when for scope, when in self.received if scope == task]

    async def wait_for(self, task: str, count: int = 1) -> list[datetime.datetime]:
        with anyio.fail_after(10):
            while len(self.of(task)) < count:
                await self._changed.wait()
        return self.of(task)


async def test_wakeups_cross_repository_instances(postgres_url: str, table_name: str) -> None:
    async with (
        postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as writer,
        postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as listener,
    ):
        wakeups = Wakeups()
        listener.set_wakeup_callback(wakeups)
        await listener._wait_listening()

        await writer.register_tasks(T0, [registration("reg", "a", T0 + 5 * SECOND), registration("reg", "b", T0 + 2 * SECOND)])
        assert await wakeups.wait_for("reg") == [T0 + 2 * SECOND]

        (claimed,) = (await writer.claim_due(T0 + 2 * SECOND, "reg", owner="w", lease_duration=LEASE, limit=5)).claimed
        completion = Completion(key=claimed.state.key, lease=claimed.lease, next_run=T0 + 7 * SECOND, data="{}")
        await writer.complete_tasks(T0 + 2 * SECOND, [completion])
        assert await wakeups.wait_for("reg", 2) == [T0 + 2 * SECOND, T0 + 7 * SECOND]

        # Pausing does not wake anyone; resuming does, with the new next run.
        await writer.register_tasks(T0, [registration("paused", "p")])
        await writer.set_paused(T0, TaskKey("paused", "p"), True)
        await writer.set_paused(T0, TaskKey("paused", "p"), False, next_run=T0 + 3 * SECOND)
        assert await wakeups.wait_for("paused", 2) == [T0, T0 + 3 * SECOND]


async def test_notify_can_be_switched_off(postgres_url: str, table_name: str) -> None:
    async with (
        postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name, postgres_notify=False) as quiet,
        postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as loud,
    ):
        wakeups = Wakeups()
        loud.set_wakeup_callback(wakeups)
        await loud._wait_listening()
        await quiet.register_tasks(T0, [registration("quiet", "a")])
        await loud.register_tasks(T0, [registration("loud", "a")])
        # Notifications arrive in commit order, so the quiet one would have come first.
        await wakeups.wait_for("loud")
        assert [scope for scope, _ in wakeups.received] == ["loud"]


async def test_listener_reconnects_after_a_cut(proxy: TcpProxy, postgres_url: str, table_name: str) -> None:
    async with (
        postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as writer,
        postgres_repository(postgres_url=through(proxy, postgres_url), postgres_table_name=table_name) as listener,
    ):
        wakeups = Wakeups()
        listener.set_wakeup_callback(wakeups)
        generation = await listener._wait_listening()
        proxy.cut()
        with anyio.fail_after(30):
            await listener._wait_listening(generation)
        await writer.register_tasks(T0, [registration("after-cut", "a")])
        assert await wakeups.wait_for("after-cut") == [T0]


@pytest.mark.parametrize(
    ("concurrency_limit", "pool_size", "statement_connections"),
    [
        (1, None, 2),  # at least 2: a poll and a completion may run together
        (7, None, 7),  # follows concurrency_limit
        (100, None, constants.MAX_DEFAULT_POOL_SIZE),  # at most 10
        (100, 12, 12),  # an explicit size is used as given, above the cap too
        (7, 1, 1),  # and below the floor
    ],
)
async def test_pool_size_follows_concurrency_limit_unless_given(
    postgres_url: str, table_name: str, concurrency_limit: int, pool_size: int | None, statement_connections: int
) -> None:
    options: dict[str, Any] = {} if pool_size is None else {"postgres_pool_size": pool_size}
    app = Pyncette(
        backend="postgres",
        postgres_url=postgres_url,
        postgres_table_name=table_name,
        concurrency_limit=concurrency_limit,
        configure_signals=False,
        **options,
    )
    async with app.create() as context:
        pool = context.repository._pool
        # One connection more than the statements get, for the LISTEN of push wake-ups, which the
        # scheduler asks for: once it listens, exactly the statement connections are left.
        assert pool.get_max_size() == statement_connections + constants.LISTENER_CONNECTIONS
        await context.repository._wait_listening()
        held = [await pool.acquire() for _ in range(statement_connections)]
        try:
            with pytest.raises(asyncio.TimeoutError):
                await pool.acquire(timeout=0.2)
        finally:
            for connection in held:
                await pool.release(connection)
