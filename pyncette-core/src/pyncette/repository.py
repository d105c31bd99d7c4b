"""The repository contract: everything that coordinates workers goes through these operations.

A repository stores *instances*, each identified by a :class:`~pyncette.model.TaskKey`. Static
tasks are instances with ``instance == ""``; dynamic instances carry their own name. The
scheduler computes every schedule itself and hands the repository plain UTC datetimes, so a
repository never parses cron expressions or time zones: it only stores, claims and
compare-and-swaps.

Every operation is atomic on its backend (a transaction, a Lua script, a conditional write). Every
time a repository needs is passed in as ``now``; a repository never reads a clock of its own for
scheduling decisions, which keeps it testable with a controllable clock. The one exception is
:meth:`Repository.server_time`, which only *reports* the store's clock so that workers can correct
theirs.

Implementations subclass :class:`Repository` and implement the abstract methods; the docstrings
below are the whole contract and implementations do not repeat them. The conformance suite in
:mod:`pyncette.testing.conformance` checks each rule.
"""

from __future__ import annotations

import abc
import datetime
from typing import Any, AsyncContextManager, Awaitable, Callable, Sequence, TypeVar

from pyncette.errors import LeaseLostException, TaskLockedException
from pyncette.model import (
    ClaimResult,
    Completion,
    DueSummary,
    Lease,
    Page,
    RegisterOutcome,
    Registration,
    TaskKey,
    TaskState,
)

MAX_INSTANCE_NAME_LENGTH = 512
"""Instance names longer than this are rejected by the scheduler before any backend sees them."""


class Repository(abc.ABC):
    """Storage of task instances shared by all workers of an app."""

    @abc.abstractmethod
    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        """Create or update instances; return one outcome per registration, in order.

        For each registration, atomically:

        - no stored instance: insert it with ``spec``, ``data`` and ``next_run``, unpaused,
          unlocked, fencing token 0; outcome ``CREATED``.
        - stored and locked (``locked_until > now``) and not ``force``: change nothing; outcome
          ``LOCKED``.
        - otherwise: store the new ``spec``; keep the stored ``next_run`` if the stored ``spec``
          equals the new one verbatim, else store the new ``next_run``; keep ``data`` and
          ``paused``. With ``force``, also clear the lock and raise the fencing token as a claim
          would (:func:`~pyncette.model.fencing_token_after`), so the previous holder's lease is
          stale. Outcome ``UPDATED``.

        Backends should register a sequence in as few round trips as the store allows; each
        registration is atomic on its own, the sequence need not be.
        """

    @abc.abstractmethod
    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        """Delete an instance, locked or not; return whether it existed. Idempotent."""

    @abc.abstractmethod
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
        """Lock-and-fetch: claim up to ``limit`` due instances of the scope ``task``.

        An instance is due when it is in scope (``key.task == task``, and ``key.instance ==
        instance`` when ``instance`` is given), not paused, ``next_run <= now``, and unlocked
        (``locked_until`` is null or ``<= now``). Due instances are claimed in ascending order of
        ``next_run`` or of eligibility, ``max(next_run, locked_until)``: both conform, and they
        differ only for an instance whose expired lease outlasted its ``next_run``. Each claim sets
        ``locked_by = owner``, ``locked_until = now + lease_duration`` and ``fencing_token =
        fencing_token_after(fencing_token, now)``, and is returned with the state as stored after
        the claim and the matching lease.

        No two concurrent calls may claim the same instance. The cost must grow with the number of
        due instances, not with the number stored. See :class:`~pyncette.model.ClaimResult` for
        ``more`` and ``next_due``.
        """

    @abc.abstractmethod
    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        """Release claimed instances; return, per completion in order, whether it was applied.

        A completion applies only when the stored instance exists, ``locked_by == lease.owner``
        and ``fencing_token == lease.token`` (whether or not ``locked_until`` has passed). It
        then deletes the instance when ``next_run`` is ``None``, and otherwise stores ``next_run``
        and ``data`` and clears ``locked_by`` and ``locked_until``, keeping ``paused`` and the
        fencing token. A completion that does not apply changes nothing.

        Backends should apply completions that arrive together in as few round trips as the store
        allows; each completion is atomic on its own.
        """

    @abc.abstractmethod
    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        """Push ``locked_until`` to ``now + lease_duration`` if ``lease`` still matches.

        Matching is as for :meth:`complete_tasks`. Returns the extended lease (same owner and
        token), or ``None`` when the lease is gone, in which case nothing changes.
        """

    @abc.abstractmethod
    async def get_task(self, key: TaskKey) -> TaskState | None:
        """The stored state of one instance, or ``None``."""

    @abc.abstractmethod
    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        """One page of the instances in scope ``task``, ordered by instance name.

        At most ``limit`` states per page. ``continuation`` is the opaque token of the previous
        page. Following the tokens until ``None`` yields every instance that existed for the whole
        listing exactly once, even if instances are added or removed meanwhile.
        """

    @abc.abstractmethod
    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        """Pause or resume an instance; return whether it exists.

        Sets ``paused``; when ``next_run`` is given also stores it, and when ``data`` is given also
        stores it (the scheduler resumes with both, to record the slots the resume skipped or
        coalesced), all in one atomic write. The lock and the fencing
        token are untouched, so a run already in progress completes normally. Paused instances
        are never claimed.
        """

    async def server_time(self) -> datetime.datetime | None:
        """The store's own clock, timezone-aware in UTC, read in one round trip (optional capability).

        Workers estimate their clock's offset from this time (see :mod:`pyncette.clock_sync`) so
        that a worker whose clock is off neither claims early nor takes over live leases. The
        value is read as late as the store allows (the time of the reply, not of a transaction's
        start), because the caller takes the round trip's midpoint as the moment it was read.
        ``None``, the default, means that the store has no clock of its own or shares the host's
        (memory, SQLite): there is nothing to correct against. Errors propagate.
        """
        return None

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary | None:
        """Measure the due backlog of scope ``task`` without claiming anything (optional capability).

        Counts the instances that are due by exactly the rule of :meth:`claim_due` (in scope, not
        paused, ``next_run <= now``, unlocked or with an expired lease) and reports the earliest
        time one of them became claimable (see :class:`~pyncette.model.DueSummary`). Read-only and
        not atomic with claims: the numbers are a snapshot for monitoring. The cost must grow with
        the number of due instances, not with the number stored (count over the due index).
        Backends that cannot count keep this default, which returns ``None``: "not supported".
        """
        del now, task
        return None

    def set_wakeup_callback(self, callback: WakeupCallback) -> None:
        """Ask the repository to push wake-ups to the scheduler (optional capability).

        A backend with a push channel (LISTEN/NOTIFY, pub/sub, ...) calls ``callback(task, when)``
        soon after *any* worker registered, resumed or released an instance of scope ``task``
        whose ``next_run`` is ``when``, so that workers do not wait for their next poll. The
        callback is cheap, never blocks and may be called from the backend's own tasks. Backends
        without a push channel keep this default, which ignores the callback; polling still works.
        """
        del callback

    async def commit_task(self, now: datetime.datetime, completion: Completion) -> None:
        """Apply one completion; raise :class:`LeaseLostException` if it does not apply."""
        (applied,) = await self.complete_tasks(now, [completion])
        if not applied:
            raise LeaseLostException(completion.key.instance or completion.key.task)

    async def register_task(self, now: datetime.datetime, registration: Registration) -> RegisterOutcome:
        """Register one instance; raise :class:`TaskLockedException` when it is locked."""
        (outcome,) = await self.register_tasks(now, [registration])
        if outcome is RegisterOutcome.LOCKED:
            raise TaskLockedException(registration.key.instance or registration.key.task)
        return outcome


T = TypeVar("T")


class RepositoryWrapper(Repository):
    """A repository that forwards every operation to ``inner`` through :meth:`around`.

    Wrappers (metrics, fault injection in tests, ...) override :meth:`around`, which sees each
    call with its operation's name, and any operation they treat specially; an operation added
    to the contract is forwarded by this class, so no wrapper can forget it. Attributes that are
    not operations (a backend's ``connection``, ``aclose()``, ...) are read from ``inner``.
    """

    def __init__(self, inner: Repository) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def around(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``, the forwarded ``operation``; the default just awaits it."""
        del operation
        return await call()

    async def register_tasks(self, now: datetime.datetime, registrations: Sequence[Registration]) -> list[RegisterOutcome]:
        return await self.around("register_tasks", lambda: self.inner.register_tasks(now, registrations))

    async def unregister_task(self, now: datetime.datetime, key: TaskKey) -> bool:
        return await self.around("unregister_task", lambda: self.inner.unregister_task(now, key))

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
        return await self.around(
            "claim_due",
            lambda: self.inner.claim_due(now, task, owner=owner, lease_duration=lease_duration, limit=limit, instance=instance),
        )

    async def complete_tasks(self, now: datetime.datetime, completions: Sequence[Completion]) -> list[bool]:
        return await self.around("complete_tasks", lambda: self.inner.complete_tasks(now, completions))

    async def extend_lease(
        self, now: datetime.datetime, key: TaskKey, lease: Lease, lease_duration: datetime.timedelta
    ) -> Lease | None:
        return await self.around("extend_lease", lambda: self.inner.extend_lease(now, key, lease, lease_duration))

    async def get_task(self, key: TaskKey) -> TaskState | None:
        return await self.around("get_task", lambda: self.inner.get_task(key))

    async def list_tasks(self, task: str, *, limit: int, continuation: str | None = None) -> Page:
        return await self.around("list_tasks", lambda: self.inner.list_tasks(task, limit=limit, continuation=continuation))

    async def set_paused(
        self,
        now: datetime.datetime,
        key: TaskKey,
        paused: bool,
        next_run: datetime.datetime | None = None,
        data: str | None = None,
    ) -> bool:
        return await self.around("set_paused", lambda: self.inner.set_paused(now, key, paused, next_run, data))

    async def server_time(self) -> datetime.datetime | None:
        return await self.around("server_time", self.inner.server_time)

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary | None:
        return await self.around("count_due", lambda: self.inner.count_due(now, task))

    def set_wakeup_callback(self, callback: WakeupCallback) -> None:
        self.inner.set_wakeup_callback(callback)


WakeupCallback = Callable[[str, datetime.datetime], None]
"""``callback(task, when)``: an instance of scope ``task`` may be due at ``when`` (UTC)."""

RepositoryFactory = Callable[..., AsyncContextManager[Repository]]
"""``factory(**options)`` returns an async context manager that yields a ready repository.

Factories receive the app's options: their own backend options plus the common ones
(``concurrency_limit``, ``batch_size``), and must accept and ignore keywords they do not use. A
repository that made its own connection closes it on exit; one handed a client does not.
"""
