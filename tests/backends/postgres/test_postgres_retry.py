"""Retries inside one operation: what is retried, what is replayed, what is raised."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any, AsyncIterator

import asyncpg
import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.postgres import _connection, constants, postgres_repository
from pyncette.postgres._connection import Failure, classify

pytestmark = pytest.mark.anyio

T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
LEASE = datetime.timedelta(seconds=30)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "RETRY_BASE_DELAY", 0.0)


def mid_statement_loss() -> Exception:
    error: Exception = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    return error


class FakePool:
    """Hands out a dummy connection; ``acquire_errors`` are raised by the next acquisitions."""

    def __init__(self, acquire_errors: list[Exception] | None = None) -> None:
        self.acquire_errors = acquire_errors or []
        self.acquired = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        self.acquired += 1
        if self.acquire_errors:
            raise self.acquire_errors.pop(0)
        yield object()


class Script:
    """A statement that raises the given errors in turn, then returns ``result``."""

    def __init__(self, *errors: Exception, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self, _connection: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def test_classification() -> None:
    assert classify(asyncpg.SerializationError("x"), sent=True) is Failure.NOT_APPLIED
    assert classify(asyncpg.DeadlockDetectedError("x"), sent=True) is Failure.NOT_APPLIED
    assert classify(asyncpg.AdminShutdownError("x"), sent=True) is Failure.NOT_APPLIED
    assert classify(mid_statement_loss(), sent=True) is Failure.UNKNOWN
    assert classify(ConnectionResetError(), sent=True) is Failure.UNKNOWN
    assert classify(asyncpg.InternalClientError("another operation is in progress"), sent=True) is Failure.UNKNOWN
    assert classify(ConnectionRefusedError(), sent=False) is Failure.NOT_APPLIED
    assert (
        classify(asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), sent=True) is Failure.NOT_APPLIED
    )
    assert classify(asyncpg.UndefinedTableError("x"), sent=True) is Failure.FATAL
    assert classify(asyncpg.DataError("invalid input for query argument"), sent=True) is Failure.FATAL
    assert classify(asyncpg.InvalidPasswordError("x"), sent=False) is Failure.FATAL


async def test_not_applied_failures_are_retried() -> None:
    statement = Script(asyncpg.SerializationError("x"), asyncpg.DeadlockDetectedError("y"))
    assert await _connection.run(FakePool(), "op", statement) == "ok"
    assert statement.calls == 3


async def test_connect_failures_are_retried() -> None:
    pool = FakePool([ConnectionRefusedError(), asyncpg.CannotConnectNowError("starting up")])
    assert await _connection.run(pool, "op", Script()) == "ok"
    assert pool.acquired == 3


async def test_mid_statement_loss_is_raised_without_a_replay() -> None:
    statement = Script(mid_statement_loss())
    with pytest.raises(BackendError, match="op failed") as info:
        await _connection.run(FakePool(), "op", statement)
    assert isinstance(info.value.__cause__, asyncpg.ConnectionDoesNotExistError)
    assert statement.calls == 1


async def test_mid_statement_loss_runs_the_replay() -> None:
    statement, replay = Script(mid_statement_loss()), Script(result="replayed")
    assert await _connection.run(FakePool(), "op", statement, replay=replay) == "replayed"
    assert (statement.calls, replay.calls) == (1, 1)


async def test_fatal_errors_are_not_retried() -> None:
    statement = Script(asyncpg.UndefinedTableError('relation "t" does not exist'))
    with pytest.raises(BackendError, match="UndefinedTableError"):
        await _connection.run(FakePool(), "op", statement, replay=statement)
    assert statement.calls == 1


async def test_retries_are_bounded() -> None:
    statement = Script(*[asyncpg.SerializationError("x")] * 10)
    with pytest.raises(BackendError):
        await _connection.run(FakePool(), "op", statement)
    assert statement.calls == constants.RETRY_ATTEMPTS


async def test_completion_lost_in_flight_is_replayed_as_applied(
    postgres_url: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        key = TaskKey("s", "a")
        await repository.register_tasks(T0, [Registration(key=key, spec="{}", data="{}", next_run=T0)])
        (claimed,) = (await repository.claim_due(T0, "s", owner="w1", lease_duration=LEASE, limit=1)).claimed
        original = repository._complete
        losses = [mid_statement_loss()]

        async def applied_then_lost(connection: Any, sql: str, batch: list[Completion]) -> Any:
            rows = await original(connection, sql, batch)
            if losses:
                raise losses.pop()
            return rows

        monkeypatch.setattr(repository, "_complete", applied_then_lost)
        completion = Completion(key=key, lease=claimed.lease, next_run=T0 + LEASE, data='{"n": 1}')
        assert await repository.complete_tasks(T0, [completion]) == [True]
        state = await repository.get_task(key)
        assert state is not None
        assert (state.locked_by, state.next_run, state.data) == (None, T0 + LEASE, '{"n": 1}')
        # Outside a replay the same completion is refused: the lease is gone.
        assert await repository.complete_tasks(T0, [completion]) == [False]


async def test_deletion_lost_in_flight_is_replayed_as_applied(
    postgres_url: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under AT_MOST_ONCE a once-off instance is deleted before it runs: a lost answer must not skip the run."""
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        keys = [TaskKey("s", "once"), TaskKey("s", "kept")]
        await repository.register_tasks(T0, [Registration(key=key, spec="{}", data="{}", next_run=T0) for key in keys])
        claimed = (await repository.claim_due(T0, "s", owner="w1", lease_duration=LEASE, limit=2)).claimed
        leases = {c.state.key: c.lease for c in claimed}
        original = repository._complete
        losses = [mid_statement_loss()]

        async def applied_then_lost(connection: Any, sql: str, batch: list[Completion]) -> Any:
            rows = await original(connection, sql, batch)
            if losses:
                raise losses.pop()
            return rows

        monkeypatch.setattr(repository, "_complete", applied_then_lost)
        completions = [
            Completion(key=keys[0], lease=leases[keys[0]], next_run=None, data="{}"),
            Completion(key=keys[1], lease=leases[keys[1]], next_run=T0 + LEASE, data="{}"),
        ]
        assert await repository.complete_tasks(T0, completions) == [True, True]
        assert await repository.get_task(keys[0]) is None
        # Outside a replay a deletion of a missing instance is not applied.
        assert await repository.complete_tasks(T0, completions[:1]) == [False]
