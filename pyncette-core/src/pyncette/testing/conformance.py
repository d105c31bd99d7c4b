"""The repository conformance suite, for every backend including third-party ones.

To prove a backend, subclass :class:`RepositoryConformance` in a test module and provide one
fixture, ``repository_factory``: a zero-argument callable returning an async context manager that
yields a repository connected to the store under test. Every call must open a *separate*
connection to the *same* store, so that races between workers are exercised::

    from pyncette.testing.conformance import RepositoryConformance

    class TestMyBackend(RepositoryConformance):
        @pytest.fixture
        def repository_factory(self):
            return lambda: my_repository(my_url="...")

Tests run under anyio's pytest plugin. Each test uses scopes with a random prefix, so the suite
can share one store with other tests and with itself.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from typing import TYPE_CHECKING, Any, AsyncContextManager, AsyncIterator, Callable

import anyio
import pytest

from pyncette.model import Completion, DueSummary, Lease, RegisterOutcome, Registration, TaskKey, TaskState, to_micros
from pyncette.repository import Repository

if TYPE_CHECKING:
    from pyncette import Pyncette

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)

RepositoryFactory = Callable[[], AsyncContextManager[Repository]]
SERVER_TIME_TOLERANCE = datetime.timedelta(seconds=2)
"""How far a store's clock may be from the test machine's clock in the ``server_time`` test."""


def registration(key: TaskKey, next_run: datetime.datetime = T0, spec: str = '{"v": 1}', **kwargs: Any) -> Registration:
    return Registration(key=key, spec=spec, data=kwargs.pop("data", '{"d": 0}'), next_run=next_run, **kwargs)


def completion(claimed_state: TaskState, lease: Lease, next_run: datetime.datetime | None, data: str = '{"d": 1}') -> Completion:
    return Completion(key=claimed_state.key, lease=lease, next_run=next_run, data=data)


@pytest.mark.anyio
class RepositoryConformance:
    """Backend-agnostic tests of :class:`pyncette.repository.Repository`, row by row."""

    @pytest.fixture
    def repository_factory(self) -> RepositoryFactory:
        raise NotImplementedError("a conformance test class must provide the repository_factory fixture")

    @pytest.fixture
    async def repository(self, repository_factory: RepositoryFactory) -> AsyncIterator[Repository]:
        async with repository_factory() as repository:
            yield repository

    @pytest.fixture
    def scope(self) -> str:
        return f"conf-{uuid.uuid4().hex[:12]}"

    async def test_application_errors_leave_the_factory_unwrapped(self, repository_factory: RepositoryFactory) -> None:
        with pytest.raises(KeyError, match="from the application"):
            async with repository_factory():
                raise KeyError("from the application")

    # register_tasks

    async def test_register_creates_unlocked_unpaused_instance(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        assert await repository.register_tasks(T0, [registration(key)]) == [RegisterOutcome.CREATED]
        state = await repository.get_task(key)
        assert state is not None
        assert (state.key, state.spec, state.data, state.next_run) == (key, '{"v": 1}', '{"d": 0}', T0)
        assert (state.paused, state.locked_by, state.locked_until, state.fencing_token) == (False, None, None, 0)

    async def test_register_same_spec_keeps_next_run_and_data(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key, next_run=T0)])
        outcome = await repository.register_tasks(T0, [registration(key, next_run=T0 + 60 * SECOND, data='{"d": 9}')])
        assert outcome == [RegisterOutcome.UPDATED]
        state = await repository.get_task(key)
        assert state is not None and state.next_run == T0 and state.data == '{"d": 0}'

    async def test_register_new_spec_takes_new_next_run(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key, next_run=T0)])
        await repository.register_tasks(T0, [registration(key, next_run=T0 + 60 * SECOND, spec='{"v": 2}')])
        state = await repository.get_task(key)
        assert state is not None and state.spec == '{"v": 2}' and state.next_run == T0 + 60 * SECOND

    async def test_register_keeps_paused(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        assert await repository.set_paused(T0, key, True)
        await repository.register_tasks(T0, [registration(key, spec='{"v": 2}')])
        state = await repository.get_task(key)
        assert state is not None and state.paused

    async def test_register_while_locked_is_refused_without_force(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)).claimed
        outcome = await repository.register_tasks(T0 + SECOND, [registration(key, spec='{"v": 2}', next_run=T0 + 99 * SECOND)])
        assert outcome == [RegisterOutcome.LOCKED]
        assert await repository.get_task(key) == claimed.state

    async def test_register_after_lease_expiry_is_accepted(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)
        outcome = await repository.register_tasks(T0 + LEASE, [registration(key, spec='{"v": 2}')])
        assert outcome == [RegisterOutcome.UPDATED]

    async def test_forced_register_makes_the_old_lease_stale(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)).claimed
        outcome = await repository.register_tasks(T0 + SECOND, [registration(key, spec='{"v": 2}', force=True)])
        assert outcome == [RegisterOutcome.UPDATED]
        state = await repository.get_task(key)
        assert state is not None and state.locked_by is None and state.locked_until is None
        assert state.fencing_token > claimed.lease.token
        assert await repository.complete_tasks(T0 + 2 * SECOND, [completion(claimed.state, claimed.lease, T0)]) == [False]
        assert await repository.extend_lease(T0 + 2 * SECOND, key, claimed.lease, LEASE) is None

    async def test_register_many_reports_each_outcome_in_order(self, repository: Repository, scope: str) -> None:
        locked = TaskKey(scope, "locked")
        await repository.register_tasks(T0, [registration(locked), registration(TaskKey(scope, "old"))])
        await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10, instance="locked")
        regs = [registration(TaskKey(scope, f"new-{i:04d}"), next_run=T0 + i * SECOND) for i in range(300)]
        regs[10] = registration(locked, spec='{"v": 2}')
        regs[20] = registration(TaskKey(scope, "old"), spec='{"v": 2}')
        outcomes = await repository.register_tasks(T0, regs)
        assert outcomes[10] is RegisterOutcome.LOCKED and outcomes[20] is RegisterOutcome.UPDATED
        assert all(outcome is RegisterOutcome.CREATED for i, outcome in enumerate(outcomes) if i not in (10, 20))
        state = await repository.get_task(TaskKey(scope, "new-0299"))
        assert state is not None and state.next_run == T0 + 299 * SECOND

    async def test_register_convenience_raises_when_locked(self, repository: Repository, scope: str) -> None:
        from pyncette.errors import TaskLockedException

        key = TaskKey(scope, "a")
        await repository.register_task(T0, registration(key))
        await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)
        with pytest.raises(TaskLockedException):
            await repository.register_task(T0, registration(key, spec='{"v": 2}'))

    # unregister_task

    async def test_unregister_is_idempotent(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        assert await repository.unregister_task(T0, key) is True
        assert await repository.unregister_task(T0, key) is False
        assert await repository.get_task(key) is None
        assert (await repository.claim_due(T0, scope, owner="w", lease_duration=LEASE, limit=10)).claimed == ()

    async def test_unregister_while_locked_deletes_and_stales_the_lease(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)).claimed
        assert await repository.unregister_task(T0, key) is True
        assert await repository.complete_tasks(T0, [completion(claimed.state, claimed.lease, T0 + SECOND)]) == [False]
        assert await repository.get_task(key) is None

    # claim_due

    async def test_claim_takes_only_due_unlocked_unpaused_in_next_run_order(self, repository: Repository, scope: str) -> None:
        regs = [
            registration(TaskKey(scope, "late"), next_run=T0 - 5 * SECOND),
            registration(TaskKey(scope, "later"), next_run=T0 - 1 * SECOND),
            registration(TaskKey(scope, "exact"), next_run=T0),
            registration(TaskKey(scope, "future"), next_run=T0 + 7 * SECOND),
            registration(TaskKey(scope, "paused"), next_run=T0 - 9 * SECOND),
            registration(TaskKey(scope, "earliest"), next_run=T0 - 20 * SECOND),
            registration(TaskKey(f"{scope}-other", "x"), next_run=T0 - 20 * SECOND),
        ]
        await repository.register_tasks(T0, regs)
        await repository.set_paused(T0, TaskKey(scope, "paused"), True)
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=100)
        assert [c.state.key.instance for c in result.claimed] == ["earliest", "late", "later", "exact"]
        assert result.more is False
        assert result.next_due == T0 + 7 * SECOND
        for claimed in result.claimed:
            assert claimed.lease.owner == "w1" and claimed.lease.locked_until == T0 + LEASE
            assert claimed.state.locked_by == "w1" and claimed.state.locked_until == T0 + LEASE
            assert claimed.state.fencing_token == claimed.lease.token > 0
            assert await repository.get_task(claimed.state.key) == claimed.state
        again = await repository.claim_due(T0 + SECOND, scope, owner="w2", lease_duration=LEASE, limit=100)
        assert again.claimed == ()

    async def test_claim_reports_next_due(self, repository: Repository, scope: str) -> None:
        await repository.register_tasks(
            T0,
            [
                registration(TaskKey(scope, "a"), next_run=T0 + 3 * SECOND),
                registration(TaskKey(scope, "b"), next_run=T0 + 9 * SECOND),
            ],
        )
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)
        assert result.claimed == ()
        assert result.next_due == T0 + 3 * SECOND

    async def test_claim_respects_limit_and_reports_more(self, repository: Repository, scope: str) -> None:
        await repository.register_tasks(
            T0, [registration(TaskKey(scope, f"i{i:03d}"), next_run=T0 - i * SECOND) for i in range(25)]
        )
        seen: list[str] = []
        for _ in range(3):
            result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)
            seen.extend(c.state.key.instance for c in result.claimed)
        assert len(seen) == 25 and len(set(seen)) == 25
        assert seen[:3] == ["i024", "i023", "i022"]
        first = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=10)
        assert first.claimed == () and first.more is False

    async def test_claim_full_batch_reports_more(self, repository: Repository, scope: str) -> None:
        await repository.register_tasks(T0, [registration(TaskKey(scope, f"i{i}")) for i in range(12)])
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=5)
        assert len(result.claimed) == 5 and result.more is True

    async def test_rewritten_instances_are_claimed_once(self, repository: Repository, scope: str) -> None:
        keys = [TaskKey(scope, f"i{i}") for i in range(5)]
        await repository.register_tasks(T0, [registration(key, next_run=T0 - SECOND) for key in keys])
        for key in keys:
            await repository.register_tasks(T0, [registration(key, next_run=T0 - SECOND)])
            await repository.set_paused(T0, key, True)
            await repository.set_paused(T0, key, False)
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=100)
        assert sorted(c.state.key.instance for c in result.claimed) == [k.instance for k in keys]

    async def test_claim_single_instance(self, repository: Repository, scope: str) -> None:
        await repository.register_tasks(T0, [registration(TaskKey(scope, "a")), registration(TaskKey(scope, "b"))])
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1, instance="b")
        assert [c.state.key for c in result.claimed] == [TaskKey(scope, "b")]
        assert (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1, instance="b")).claimed == ()
        missing = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1, instance="zz")
        assert missing.claimed == ()

    async def test_static_task_key_with_empty_instance(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "")
        await repository.register_tasks(T0, [registration(key)])
        result = await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1, instance="")
        assert [c.state.key for c in result.claimed] == [key]
        page = await repository.list_tasks(scope, limit=10)
        assert [s.key for s in page.states] == [key]

    async def test_expired_lease_is_reclaimed_with_a_greater_fencing_token(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (first,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert (await repository.claim_due(T0 + LEASE - SECOND, scope, owner="w2", lease_duration=LEASE, limit=1)).claimed == ()
        (second,) = (await repository.claim_due(T0 + LEASE, scope, owner="w2", lease_duration=LEASE, limit=1)).claimed
        assert second.lease.token > first.lease.token
        assert second.lease.owner == "w2"
        assert await repository.complete_tasks(T0 + LEASE, [completion(first.state, first.lease, T0 + 60 * SECOND)]) == [False]
        assert await repository.extend_lease(T0 + LEASE, key, first.lease, LEASE) is None
        assert await repository.complete_tasks(T0 + LEASE, [completion(second.state, second.lease, T0 + 60 * SECOND)]) == [True]

    async def test_reclaim_by_the_same_owner_stales_the_old_lease(self, repository: Repository, scope: str) -> None:
        """A worker whose lease expired and that claimed the instance again holds only the new lease.

        The owner is the same, so only the fencing token tells the leases apart: extend, complete
        and commit with the old one change nothing.
        """
        from pyncette.errors import LeaseLostException

        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (first,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        (second,) = (await repository.claim_due(T0 + LEASE, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert second.lease.owner == first.lease.owner == "w1"
        assert second.lease.token > first.lease.token
        now = T0 + LEASE + SECOND
        assert await repository.extend_lease(now, key, first.lease, LEASE) is None
        assert await repository.complete_tasks(now, [completion(first.state, first.lease, T0 + 60 * SECOND)]) == [False]
        with pytest.raises(LeaseLostException):
            await repository.commit_task(now, completion(first.state, first.lease, T0 + 90 * SECOND))
        assert await repository.get_task(key) == second.state
        assert await repository.complete_tasks(now, [completion(second.state, second.lease, T0 + 60 * SECOND)]) == [True]

    async def test_fencing_token_increases_on_every_claim_even_across_recreation(
        self, repository: Repository, scope: str
    ) -> None:
        key = TaskKey(scope, "a")
        tokens = []
        now = T0
        for _ in range(3):
            await repository.register_tasks(now, [registration(key, next_run=now)])
            (claimed,) = (await repository.claim_due(now, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
            tokens.append(claimed.lease.token)
            assert await repository.complete_tasks(now, [completion(claimed.state, claimed.lease, now)]) == [True]
            (claimed,) = (await repository.claim_due(now, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
            tokens.append(claimed.lease.token)
            await repository.unregister_task(now, key)
            now += SECOND
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
        assert tokens[0] >= to_micros(T0)

    async def test_concurrent_claims_never_share_an_instance(self, repository_factory: RepositoryFactory, scope: str) -> None:
        count, workers = 120, 4
        claims: dict[str, list[str]] = {}
        async with contextlib.AsyncExitStack() as stack:
            repos = [await stack.enter_async_context(repository_factory()) for _ in range(workers)]
            await repos[0].register_tasks(T0, [registration(TaskKey(scope, f"i{i:04d}")) for i in range(count)])

            async def worker(index: int) -> None:
                while True:
                    result = await repos[index].claim_due(T0, scope, owner=f"w{index}", lease_duration=LEASE, limit=7)
                    for claimed in result.claimed:
                        claims.setdefault(claimed.state.key.instance, []).append(f"w{index}")
                    if not result.claimed:
                        return

            async with anyio.create_task_group() as group:
                for index in range(workers):
                    group.start_soon(worker, index)
        assert len(claims) == count
        assert all(len(owners) == 1 for owners in claims.values()), {k: v for k, v in claims.items() if len(v) > 1}

    async def test_concurrent_claims_of_one_instance_have_one_winner(
        self, repository_factory: RepositoryFactory, scope: str
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            repos = [await stack.enter_async_context(repository_factory()) for _ in range(4)]
            for round_ in range(15):
                key = TaskKey(scope, f"r{round_}")
                await repos[0].register_tasks(T0, [registration(key)])
                winners: list[int] = []

                async def claim(index: int, instance: str = key.instance, winners: list[int] = winners) -> None:
                    result = await repos[index].claim_due(
                        T0, scope, owner=f"w{index}", lease_duration=LEASE, limit=1, instance=instance
                    )
                    if result.claimed:
                        winners.append(index)

                async with anyio.create_task_group() as group:
                    for index in range(4):
                        group.start_soon(claim, index)
                assert len(winners) == 1

    # count_due

    @staticmethod
    async def _count_due(repository: Repository, now: datetime.datetime, task: str) -> DueSummary:
        summary = await repository.count_due(now, task)
        if summary is None:
            pytest.skip(f"{type(repository).__name__}.count_due returns None: the backend does not measure its backlog")
        return summary

    async def test_count_due_counts_exactly_what_a_claim_would_take(self, repository: Repository, scope: str) -> None:
        regs = [
            registration(TaskKey(scope, "late"), next_run=T0 - 5 * SECOND),
            registration(TaskKey(scope, "exact"), next_run=T0),
            registration(TaskKey(scope, "future"), next_run=T0 + 99 * SECOND),
            registration(TaskKey(scope, "paused"), next_run=T0 - 90 * SECOND),
            registration(TaskKey(scope, "locked"), next_run=T0 - 80 * SECOND),
            registration(TaskKey(scope, "expired"), next_run=T0 - 70 * SECOND),
            registration(TaskKey(f"{scope}-other", "x"), next_run=T0 - 99 * SECOND),
        ]
        await repository.register_tasks(T0 - 100 * SECOND, regs)
        await repository.set_paused(T0, TaskKey(scope, "paused"), True)
        # "expired" was claimed by a worker that vanished: its lease ran out at T0 - 30 s, after its next_run.
        claim = repository.claim_due
        await claim(T0 - 40 * SECOND, scope, owner="gone", lease_duration=10 * SECOND, limit=1, instance="expired")
        await claim(T0 - SECOND, scope, owner="busy", lease_duration=LEASE, limit=1, instance="locked")
        assert await self._count_due(repository, T0, scope) == DueSummary(count=3, oldest=T0 - 30 * SECOND)
        # A moment before "exact" is due; and before "late" was due and the lease of "expired" ran out.
        assert await self._count_due(repository, T0 - SECOND, scope) == DueSummary(count=2, oldest=T0 - 30 * SECOND)
        assert await self._count_due(repository, T0 - 31 * SECOND, scope) == DueSummary(count=0, oldest=None)
        result = await claim(T0, scope, owner="w", lease_duration=LEASE, limit=100)
        assert sorted(c.state.key.instance for c in result.claimed) == ["exact", "expired", "late"]
        assert await self._count_due(repository, T0, scope) == DueSummary(count=0, oldest=None)
        # Once the leases run out, all of them are due again, "locked" included (its lease ended first).
        later = T0 + LEASE
        assert await self._count_due(repository, later, scope) == DueSummary(count=4, oldest=T0 - SECOND + LEASE)

    async def test_count_due_of_static_and_partitioned_scopes(self, repository: Repository, scope: str) -> None:
        static, first, second = f"{scope}-static", f"{scope}:0", f"{scope}:1"
        regs = [
            registration(TaskKey(static), next_run=T0 - 2 * SECOND),
            registration(TaskKey(first, "a"), next_run=T0 - 3 * SECOND),
            registration(TaskKey(first, "b"), next_run=T0 + 3 * SECOND),
            *(registration(TaskKey(second, f"i{i}"), next_run=T0 - i * SECOND) for i in range(1, 6)),
        ]
        await repository.register_tasks(T0 - 10 * SECOND, regs)
        assert await self._count_due(repository, T0, static) == DueSummary(count=1, oldest=T0 - 2 * SECOND)
        assert await self._count_due(repository, T0, first) == DueSummary(count=1, oldest=T0 - 3 * SECOND)
        assert await self._count_due(repository, T0, second) == DueSummary(count=5, oldest=T0 - 5 * SECOND)
        assert await self._count_due(repository, T0, scope) == DueSummary(count=0, oldest=None)
        await repository.unregister_task(T0, TaskKey(second, "i5"))
        assert await self._count_due(repository, T0, second) == DueSummary(count=4, oldest=T0 - 4 * SECOND)

    # complete_tasks

    async def test_complete_reschedules_and_unlocks(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert await repository.complete_tasks(T0, [completion(claimed.state, claimed.lease, T0 + 60 * SECOND, '{"d": 5}')]) == [
            True
        ]
        state = await repository.get_task(key)
        assert state is not None
        assert (state.next_run, state.data, state.locked_by, state.locked_until) == (T0 + 60 * SECOND, '{"d": 5}', None, None)
        assert state.fencing_token == claimed.lease.token and state.spec == '{"v": 1}'
        assert (await repository.claim_due(T0 + 59 * SECOND, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed == ()
        assert len((await repository.claim_due(T0 + 60 * SECOND, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed) == 1

    async def test_complete_without_next_run_deletes(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert await repository.complete_tasks(T0, [completion(claimed.state, claimed.lease, None)]) == [True]
        assert await repository.get_task(key) is None

    async def test_complete_with_expired_but_unclaimed_lease_applies(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert await repository.complete_tasks(T0 + 3 * LEASE, [completion(claimed.state, claimed.lease, T0 + 99 * SECOND)]) == [
            True
        ]

    async def test_complete_with_wrong_owner_or_token_changes_nothing(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        wrong_owner = Lease(owner="w2", token=claimed.lease.token, locked_until=claimed.lease.locked_until)
        wrong_token = Lease(owner="w1", token=claimed.lease.token - 1, locked_until=claimed.lease.locked_until)
        results = await repository.complete_tasks(
            T0, [completion(claimed.state, wrong_owner, None), completion(claimed.state, wrong_token, None)]
        )
        assert results == [False, False]
        assert await repository.get_task(key) == claimed.state

    async def test_complete_on_missing_instance_is_not_applied(self, repository: Repository, scope: str) -> None:
        lease = Lease(owner="w1", token=1, locked_until=T0 + LEASE)
        result = await repository.complete_tasks(
            T0, [Completion(key=TaskKey(scope, "none"), lease=lease, next_run=T0, data="{}")]
        )
        assert result == [False]
        assert await repository.get_task(TaskKey(scope, "none")) is None

    async def test_complete_many_at_once(self, repository: Repository, scope: str) -> None:
        await repository.register_tasks(T0, [registration(TaskKey(scope, f"i{i:03d}")) for i in range(50)])
        claimed = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=50)).claimed
        assert len(claimed) == 50
        completions = [completion(c.state, c.lease, None if i % 2 else T0 + i * SECOND) for i, c in enumerate(claimed)]
        stale = Lease(owner="w1", token=claimed[0].lease.token + 1000, locked_until=T0)
        completions.append(Completion(key=claimed[0].state.key, lease=stale, next_run=None, data="{}"))
        results = await repository.complete_tasks(T0, completions)
        assert results == [True] * 50 + [False]
        page = await repository.list_tasks(scope, limit=100)
        assert len(page.states) == 25 and all(s.locked_by is None for s in page.states)

    async def test_pause_while_locked_survives_completion(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        assert await repository.set_paused(T0, key, True)
        assert await repository.complete_tasks(T0, [completion(claimed.state, claimed.lease, T0)]) == [True]
        state = await repository.get_task(key)
        assert state is not None and state.paused and state.locked_by is None
        assert (await repository.claim_due(T0 + LEASE, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed == ()

    # extend_lease

    async def test_extend_lease(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key)])
        (claimed,) = (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=1)).claimed
        extended = await repository.extend_lease(T0 + 20 * SECOND, key, claimed.lease, LEASE)
        assert extended is not None
        assert (extended.owner, extended.token, extended.locked_until) == ("w1", claimed.lease.token, T0 + 20 * SECOND + LEASE)
        assert (await repository.claim_due(T0 + LEASE, scope, owner="w2", lease_duration=LEASE, limit=1)).claimed == ()
        state = await repository.get_task(key)
        assert state is not None and state.locked_until == extended.locked_until
        assert await repository.complete_tasks(T0 + LEASE, [completion(claimed.state, extended, T0 + 99 * SECOND)]) == [True]

    async def test_extend_lease_of_missing_instance(self, repository: Repository, scope: str) -> None:
        lease = Lease(owner="w1", token=1, locked_until=T0)
        assert await repository.extend_lease(T0, TaskKey(scope, "nope"), lease, LEASE) is None

    # get_task / list_tasks

    async def test_get_missing_task(self, repository: Repository, scope: str) -> None:
        assert await repository.get_task(TaskKey(scope, "missing")) is None

    async def test_list_pages_return_every_instance_exactly_once(self, repository: Repository, scope: str) -> None:
        names = [f"n{i:03d}" for i in range(53)]
        await repository.register_tasks(T0, [registration(TaskKey(scope, name)) for name in names])
        await repository.register_tasks(T0, [registration(TaskKey(f"{scope}x", "other"))])
        seen: list[str] = []
        continuation = None
        pages = 0
        while True:
            page = await repository.list_tasks(scope, limit=10, continuation=continuation)
            assert len(page.states) <= 10
            seen.extend(state.key.instance for state in page.states)
            pages += 1
            if page.continuation is None:
                break
            continuation = page.continuation
            # churn between pages: stable instances must still be listed exactly once
            await repository.register_tasks(T0, [registration(TaskKey(scope, f"z-new-{pages}"))])
            await repository.unregister_task(T0, TaskKey(scope, f"z-new-{pages}"))
        assert sorted(seen) == names
        assert seen == sorted(seen)
        assert pages >= 6

    async def test_list_empty_scope(self, repository: Repository, scope: str) -> None:
        page = await repository.list_tasks(scope, limit=10)
        assert page.states == () and page.continuation is None

    # set_paused

    async def test_pause_and_resume(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key, next_run=T0 - SECOND)])
        assert await repository.set_paused(T0, key, True)
        assert (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=5)).claimed == ()
        state = await repository.get_task(key)
        assert state is not None and state.paused
        assert await repository.set_paused(T0, key, False, next_run=T0 + 5 * SECOND)
        assert (await repository.claim_due(T0, scope, owner="w1", lease_duration=LEASE, limit=5)).claimed == ()
        assert len((await repository.claim_due(T0 + 5 * SECOND, scope, owner="w1", lease_duration=LEASE, limit=5)).claimed) == 1
        assert await repository.set_paused(T0, TaskKey(scope, "missing"), True) is False

    async def test_resume_stores_next_run_and_data_together(self, repository: Repository, scope: str) -> None:
        key = TaskKey(scope, "a")
        await repository.register_tasks(T0, [registration(key, next_run=T0 - 9 * SECOND)])
        assert await repository.set_paused(T0, key, True)
        assert await repository.set_paused(T0, key, False, next_run=T0 + 5 * SECOND, data='{"missed": 4}')
        state = await repository.get_task(key)
        assert state is not None and (state.paused, state.next_run, state.data) == (False, T0 + 5 * SECOND, '{"missed": 4}')
        assert await repository.set_paused(T0, key, True)
        state = await repository.get_task(key)
        assert state is not None and state.data == '{"missed": 4}', "data is kept when not given"
        assert await repository.set_paused(T0, TaskKey(scope, "missing"), False, data="{}") is False
        assert await repository.get_task(TaskKey(scope, "missing")) is None

    # values

    async def test_values_round_trip_exactly(self, repository: Repository, scope: str) -> None:
        odd = TaskKey(f"{scope}:7", "ünïcødé 'quoted' \"double\" :colon {brace} %percent% \\back")
        spec = '{"args": {"text": "' + "x" * 10_000 + '"}}'
        moment = datetime.datetime(2030, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
        await repository.register_tasks(T0, [registration(odd, next_run=moment, spec=spec)])
        state = await repository.get_task(odd)
        assert state is not None and state.key == odd and state.spec == spec and state.next_run == moment
        assert state.next_run.utcoffset() == datetime.timedelta(0)
        page = await repository.list_tasks(odd.task, limit=5)
        assert [s.key for s in page.states] == [odd]

    # server_time

    async def test_server_time_is_utc_and_agrees_with_this_host(self, repository: Repository) -> None:
        """A store's clock, where it has one, is aware UTC and within a few seconds of this host's.

        The suite runs the store on (or synchronised with) the test machine, so each read must
        fall inside the local send/receive window widened by :data:`SERVER_TIME_TOLERANCE`.
        A store without a clock must say so consistently (``None`` every time).
        """
        readings: list[datetime.datetime | None] = []
        for _ in range(3):
            sent = datetime.datetime.now(UTC)
            moment = await repository.server_time()
            received = datetime.datetime.now(UTC)
            readings.append(moment)
            if moment is not None:
                assert moment.tzinfo is not None and moment.utcoffset() == datetime.timedelta(0), moment
                assert sent - SERVER_TIME_TOLERANCE <= moment <= received + SERVER_TIME_TOLERANCE, (sent, moment, received)
        assert all(r is None for r in readings) or all(r is not None for r in readings), readings

    def app(self, repository_factory: RepositoryFactory, **options: Any) -> Pyncette:
        """An app whose store is the backend under test (no plugins are loaded)."""
        from pyncette import Pyncette

        options.setdefault("poll_interval", datetime.timedelta(hours=1))
        return Pyncette(repository_factory=lambda **_: repository_factory(), autoload_plugins=False, **options)

    async def test_policy_instances_run_at_their_slots(self, repository_factory: RepositoryFactory, scope: str) -> None:
        from pyncette.testing import FakeClock, run_until

        app = self.app(repository_factory)
        runs: list[tuple[str, datetime.datetime]] = []

        @app.dynamic_task(name=scope)
        async def job(context: Any) -> None:
            runs.append((context.task.name, context.scheduled_at))

        clock = FakeClock(T0)
        async with app.create(clock=clock) as ctx:
            await ctx.schedule_tasks([(job, f"every-{i}", {"interval": (i + 1) * 10 * SECOND}) for i in range(3)])
            await ctx.schedule_task(job, "once", execute_at=T0 + 15 * SECOND)
            await run_until(ctx, T0 + 30 * SECOND)
            assert await ctx.get_task(job, "once") is None
        assert sorted(runs) == sorted(
            [
                ("every-0", T0 + 10 * SECOND),
                ("every-0", T0 + 20 * SECOND),
                ("every-0", T0 + 30 * SECOND),
                ("every-1", T0 + 20 * SECOND),
                ("every-2", T0 + 30 * SECOND),
                ("once", T0 + 15 * SECOND),
            ]
        )

    async def test_policy_retry_attempts_are_stored(self, repository_factory: RepositoryFactory, scope: str) -> None:
        from pyncette import FailureMode
        from pyncette.testing import FakeClock, run_until

        attempts: list[int] = []
        clock = FakeClock(T0)
        for until in (T0 + 61 * SECOND, T0 + 70 * SECOND):
            app = self.app(repository_factory)

            @app.task(
                name=scope,
                interval=60 * SECOND,
                failure_mode=FailureMode.UNLOCK,
                max_attempts=3,
                retry_delay=SECOND,
                retry_backoff=1,
            )
            async def job(context: Any) -> None:
                attempts.append(context.attempt)
                raise RuntimeError("fails on purpose")

            async with app.create(clock=clock) as ctx:
                await run_until(ctx, until)
                found = await ctx.get_task(job)
        assert attempts == [1, 2, 3]
        assert found is not None and found.status is not None
        assert found.status.given_up == 1 and found.status.next_run == T0 + 120 * SECOND

    async def test_policy_pause_resume_and_misfire_counts(self, repository_factory: RepositoryFactory, scope: str) -> None:
        from pyncette.testing import FakeClock, run_until

        app = self.app(repository_factory)
        slots: list[datetime.datetime] = []

        @app.dynamic_task(name=scope, catch_up="skip", misfire_grace=SECOND)
        async def job(context: Any) -> None:
            slots.append(context.scheduled_at)

        @app.dynamic_task(name=f"{scope}-all")
        async def paused_job(context: Any) -> None:
            slots.append(context.scheduled_at)

        clock = FakeClock(T0)
        async with app.create(clock=clock) as ctx:
            await ctx.schedule_task(paused_job, "a", interval=10 * SECOND)
            await ctx.schedule_task(job, "b", interval=10 * SECOND)
            await ctx.pause_task(paused_job, "a")
            paused = await ctx.get_task(paused_job, "a")
            assert paused is not None and paused.status is not None and paused.status.paused
            clock.set(T0 + 45 * SECOND)
            await ctx.tick()
            b = await ctx.get_task(job, "b")
            assert b is not None and b.status is not None and b.status.missed == 4 and b.status.next_run == T0 + 50 * SECOND
            await ctx.resume_task(paused_job, "a", catch_up="latest")
            a = await ctx.get_task(paused_job, "a")
            assert a is not None and a.status is not None and not a.status.paused
            assert (a.status.coalesced, a.status.next_run) == (3, T0 + 40 * SECOND)
            await run_until(ctx, T0 + 50 * SECOND)
        assert sorted(slots) == [T0 + 40 * SECOND, T0 + 50 * SECOND, T0 + 50 * SECOND], slots

    async def test_policy_fencing_tokens_grow_with_every_run(self, repository_factory: RepositoryFactory, scope: str) -> None:
        from pyncette.testing import FakeClock, run_until

        app = self.app(repository_factory)
        tokens: list[int] = []

        @app.task(name=scope, interval=SECOND)
        async def job(context: Any) -> None:
            tokens.append(context.fencing_token)

        async with app.create(clock=FakeClock(T0)) as ctx:
            await run_until(ctx, T0 + 4 * SECOND)
            await ctx.repository.unregister_task(T0, TaskKey(scope, ""))
        assert len(tokens) == 4 and tokens == sorted(set(tokens))

    async def test_policy_bulk_scheduled_instances_drain_exactly_once(
        self, repository_factory: RepositoryFactory, scope: str
    ) -> None:
        from pyncette.testing import FakeClock

        app = self.app(repository_factory, batch_size=50)
        runs: list[str] = []

        @app.partitioned_task(name=scope, partition_count=3)
        async def job(context: Any) -> None:
            runs.append(context.task.name)

        async with app.create(clock=FakeClock(T0)) as ctx:
            names = [f"n{i:03d}" for i in range(200)]
            await ctx.schedule_tasks([(job, name, {"execute_at": T0}) for name in names])
            listed: list[str] = []
            token = None
            while True:
                page = await ctx.list_tasks(job, limit=64, continuation_token=token)
                listed.extend(task.name for task in page.tasks)
                token = page.continuation_token
                if token is None:
                    break
            assert sorted(listed) == names
            assert await ctx.tick() == 200
            assert (await ctx.list_tasks(job)).tasks == []
        assert sorted(runs) == names
