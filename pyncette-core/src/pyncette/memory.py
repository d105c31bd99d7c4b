"""The in-memory backend: one process, nothing persisted.

It implements the whole repository contract and is the reference the conformance suite is
written against. Each scope keeps its instances in a dict and a heap of eligibility times, so a
claim costs O(due * log n) however many instances are stored.
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
from typing import Any, AsyncIterator, Sequence

import attrs

from pyncette.hookspecs import hookimpl
from pyncette.model import (
    BackendInfo,
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
)
from pyncette.repository import Repository


def _eligible_at(state: TaskState) -> datetime.datetime:
    if state.locked_until is not None and state.locked_until > state.next_run:
        return state.locked_until
    return state.next_run


@attrs.define(eq=False)
class _Scope:
    states: dict[str, TaskState] = attrs.field(factory=dict)
    heap: list[tuple[datetime.datetime, str]] = attrs.field(factory=list)

    def put(self, state: TaskState) -> None:
        self.states[state.key.instance] = state
        if not state.paused:
            heapq.heappush(self.heap, (_eligible_at(state), state.key.instance))

    def _valid(self, entry: tuple[datetime.datetime, str]) -> bool:
        state = self.states.get(entry[1])
        return state is not None and not state.paused and _eligible_at(state) == entry[0]

    def pop_due(self, now: datetime.datetime) -> TaskState | None:
        while self.heap and self.heap[0][0] <= now:
            entry = heapq.heappop(self.heap)
            if self._valid(entry):
                return self.states[entry[1]]
        return None

    def due(self, now: datetime.datetime) -> DueSummary:
        """Count the due instances by walking the heap entries eligible at ``now`` (O(due log n))."""
        seen: set[str] = set()
        oldest: datetime.datetime | None = None
        pending = [0] if self.heap else []
        while pending:
            index = pending.pop()
            entry = self.heap[index]
            if entry[0] > now:
                continue
            if entry[1] not in seen and self._valid(entry):
                seen.add(entry[1])
                oldest = entry[0] if oldest is None else min(oldest, entry[0])
            pending.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(self.heap))
        return DueSummary(count=len(seen), oldest=oldest)

    def earliest(self) -> datetime.datetime | None:
        while self.heap and not self._valid(self.heap[0]):
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None


class MemoryRepository(Repository):
    """A :class:`Repository` held in this process's memory."""

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}

    def _scope(self, task: str) -> _Scope:
        scope = self._scopes.get(task)
        if scope is None:
            scope = self._scopes[task] = _Scope()
        return scope

    def _get(self, key: TaskKey) -> TaskState | None:
        scope = self._scopes.get(key.task)
        return scope.states.get(key.instance) if scope else None

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        return [self._register(now, registration) for registration in registrations]

    def _register(self, now: datetime.datetime, reg: Registration) -> RegisterOutcome:
        scope = self._scope(reg.key.task)
        stored = scope.states.get(reg.key.instance)
        if stored is None:
            scope.put(TaskState(key=reg.key, spec=reg.spec, data=reg.data, next_run=reg.next_run))
            return RegisterOutcome.CREATED
        if stored.is_locked(now) and not reg.force:
            return RegisterOutcome.LOCKED
        updated = attrs.evolve(stored, spec=reg.spec, next_run=stored.next_run if stored.spec == reg.spec else reg.next_run)
        if reg.force:
            updated = attrs.evolve(
                updated,
                locked_by=None,
                locked_until=None,
                fencing_token=fencing_token_after(stored.fencing_token, now),
            )
        scope.put(updated)
        return RegisterOutcome.UPDATED

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        scope = self._scopes.get(key.task)
        return scope is not None and scope.states.pop(key.instance, None) is not None

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
        scope = self._scope(task)
        if instance is not None:
            candidate = scope.states.get(instance)
            due = [candidate] if candidate and not candidate.paused and _eligible_at(candidate) <= now else []
        else:
            due = []
        claimed: list[ClaimedTask] = []
        while True:
            if instance is None and len(claimed) < limit:
                state = scope.pop_due(now)
                due = [state] if state is not None else []
            if not due:
                break
            state = due.pop()
            # Claim each before popping the next, so a duplicate heap entry of it is no longer valid.
            lease = Lease(owner=owner, token=fencing_token_after(state.fencing_token, now), locked_until=now + lease_duration)
            locked = attrs.evolve(state, locked_by=owner, locked_until=lease.locked_until, fencing_token=lease.token)
            scope.put(locked)
            claimed.append(ClaimedTask(state=locked, lease=lease))
            if instance is not None:
                break
        more = instance is None and len(claimed) == limit
        earliest = scope.earliest()
        next_due = earliest if earliest is not None and earliest > now else None
        return ClaimResult(claimed=tuple(claimed), more=more, next_due=next_due)

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary:
        scope = self._scopes.get(task)
        return scope.due(now) if scope is not None else DueSummary(count=0)

    def _holds(self, key: TaskKey, lease: Lease) -> TaskState | None:
        stored = self._get(key)
        if stored is None or stored.locked_by != lease.owner or stored.fencing_token != lease.token:
            return None
        return stored

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        results = []
        for completion in completions:
            stored = self._holds(completion.key, completion.lease)
            if stored is not None:
                if completion.next_run is None:
                    del self._scopes[completion.key.task].states[completion.key.instance]
                else:
                    released = attrs.evolve(
                        stored, next_run=completion.next_run, data=completion.data, locked_by=None, locked_until=None
                    )
                    self._scope(completion.key.task).put(released)
            results.append(stored is not None)
        return results

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        stored = self._holds(key, lease)
        if stored is None:
            return None
        extended = attrs.evolve(lease, locked_until=now + lease_duration)
        self._scope(key.task).put(attrs.evolve(stored, locked_until=extended.locked_until))
        return extended

    async def get_task(self, key: TaskKey) -> TaskState | None:
        return self._get(key)

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        scope = self._scopes.get(task)
        names = sorted(name for name in (scope.states if scope else {}) if continuation is None or name > continuation)
        page = names[:limit]
        states = tuple(scope.states[name] for name in page) if scope else ()
        return Page(states=states, continuation=page[-1] if len(names) > limit else None)

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        stored = self._get(key)
        if stored is None:
            return False
        data = stored.data if data is None else data
        self._scope(key.task).put(attrs.evolve(stored, paused=paused, next_run=next_run or stored.next_run, data=data))
        return True


@contextlib.asynccontextmanager
async def memory_repository(**_options: Any) -> AsyncIterator[MemoryRepository]:
    """Factory of the in-memory backend; it takes no options."""
    yield MemoryRepository()


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="memory",
            factory=memory_repository,
            options={},
            description="in-process memory; nothing is shared or persisted",
            distribution="pyncette-core",
        )
    ]
