"""Values shared by the scheduler and the repositories.

Everything here is a frozen ``attrs`` class or an enum. All datetimes are timezone-aware and in UTC
whenever they cross the repository boundary.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any, Awaitable, Callable, Mapping

import attrs

JSON = Any
"""A value that ``json.dumps`` accepts: dict, list, str, int, float, bool or None."""

NextFunc = Callable[[], Awaitable[None]]
"""The continuation a middleware calls to run the rest of the chain."""


class ExecutionMode(enum.Enum):
    """How a task run relates to its lease.

    ``AT_LEAST_ONCE``: the slot is committed after the task body returns; a worker that dies
    mid-run leaves the instance locked until the lease expires, then another worker runs it again.

    ``AT_MOST_ONCE``: the slot is committed (advanced) before the task body starts; a worker that
    dies mid-run loses that run.
    """

    AT_LEAST_ONCE = 0
    AT_MOST_ONCE = 1


class FailureMode(enum.Enum):
    """What happens to an ``AT_LEAST_ONCE`` slot whose task raised.

    ``NONE``: the slot is retried when the failed attempt's lease would have expired (or after
    the retry back-off, if later). The instance is released with the attempt stored and its next
    run set to that moment, so ``context.attempt`` counts on across workers.
    ``UNLOCK``: release the lease at once; the slot is retried on the next poll (or after the
    retry back-off when the task has a retry policy).
    ``COMMIT``: give the slot up and move to the next one, as if it had succeeded.
    """

    NONE = 0
    UNLOCK = 1
    COMMIT = 2


class CatchUp(enum.Enum):
    """Misfire policy: what to do with slots that came due while no worker ran them."""

    ALL = "all"
    LATEST = "latest"
    SKIP = "skip"


class DstGap(enum.Enum):
    """What a cron schedule does with a wall time that does not exist on a spring-forward day.

    ``TRANSITION``: run at the instant the gap ends, the first wall time that exists after it
    (02:30 on a New York spring-forward day runs at 03:00 EDT), as classic Vixie cron does; all
    the matches of one gap are one slot. The default for fixed-time jobs.
    ``SHIFT``: run at the wall time shifted forward by the length of the gap (02:30 runs at
    03:30 EDT), which keeps the jobs of the gap in their order and at their spacing.
    ``SKIP``: do not run; the default for jobs whose hour field is a wildcard or a step.
    """

    TRANSITION = "transition"
    SHIFT = "shift"
    SKIP = "skip"


class DstFold(enum.Enum):
    """A cron wall time that occurs twice on a fall-back day."""

    FIRST = "first"
    LAST = "last"
    BOTH = "both"


class RegisterOutcome(enum.Enum):
    """Result of registering one instance (see :meth:`Repository.register_tasks`)."""

    CREATED = "created"
    UPDATED = "updated"
    LOCKED = "locked"


@attrs.frozen(order=True)
class TaskKey:
    """Identity of one stored instance.

    ``task`` is the storage scope: the task's name, or ``"<name>:<partition>"`` for a partition of
    a partitioned task. ``instance`` is the instance name of a dynamic task, and ``""`` for a
    static task.
    """

    task: str
    instance: str = ""


@attrs.frozen(kw_only=True)
class Lease:
    """Proof that one worker holds an instance.

    ``token`` is the fencing token: every successful claim of an instance stores a token strictly
    greater than the one before it. Operations that present an older token change nothing.
    """

    owner: str
    token: int
    locked_until: datetime.datetime


@attrs.frozen(kw_only=True)
class TaskState:
    """One instance as the store holds it.

    ``spec`` and ``data`` are JSON texts written by the scheduler and opaque to repositories.
    ``spec`` is the instance definition and is compared verbatim on registration; ``data`` holds
    bookkeeping (attempt number, counters) rewritten on every completion.
    """

    key: TaskKey
    spec: str
    data: str
    next_run: datetime.datetime
    paused: bool = False
    locked_until: datetime.datetime | None = None
    locked_by: str | None = None
    fencing_token: int = 0

    def is_locked(self, now: datetime.datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def lease(self) -> Lease | None:
        """The lease recorded on this state, if any (expired or not)."""
        if self.locked_by is None or self.locked_until is None:
            return None
        return Lease(owner=self.locked_by, token=self.fencing_token, locked_until=self.locked_until)


@attrs.frozen(kw_only=True)
class Registration:
    """A request to create or update one instance (see :meth:`Repository.register_tasks`)."""

    key: TaskKey
    spec: str
    data: str
    next_run: datetime.datetime
    force: bool = False


@attrs.frozen(kw_only=True)
class ClaimedTask:
    """An instance claimed by a worker, with the lease that proves it."""

    state: TaskState
    lease: Lease


@attrs.frozen(kw_only=True)
class ClaimResult:
    """Result of :meth:`Repository.claim_due`.

    ``more`` is true when the store may hold further due instances beyond ``limit``.
    ``next_due`` tells the scheduler when to look at the scope again: a time later than ``now`` and
    no later than the earliest ``next_run`` after ``now`` among unpaused instances. It may be
    earlier than that (for example the expiry of a lease, which only costs an extra poll), and it
    is ``None`` only when nothing in the scope can become claimable after ``now``.
    """

    claimed: tuple[ClaimedTask, ...]
    more: bool = False
    next_due: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class DueSummary:
    """Result of :meth:`Repository.count_due`: the due backlog of one scope at ``now``.

    ``count`` is the number of instances :meth:`Repository.claim_due` would claim at ``now`` with an
    unbounded ``limit``. ``oldest`` is the earliest time at which one of them became claimable:
    its ``next_run``, or the end of an expired lease that outlasted its ``next_run`` (the order
    every due index keeps); ``None`` when ``count`` is 0.
    """

    count: int
    oldest: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class Completion:
    """Release of a claimed instance (see :meth:`Repository.complete_tasks`).

    ``next_run=None`` deletes the instance (a once-off task that ran); otherwise the instance is
    unlocked with the given ``next_run`` and ``data``.
    """

    key: TaskKey
    lease: Lease
    next_run: datetime.datetime | None
    data: str


@attrs.frozen(kw_only=True)
class Page:
    """One page of a listing; ``continuation`` is ``None`` on the last page."""

    states: tuple[TaskState, ...]
    continuation: str | None = None


@attrs.frozen(kw_only=True)
class BackendInfo:
    """A backend contributed by a plugin through ``pyncette_backends``.

    ``factory(**options)`` returns an async context manager yielding a :class:`Repository`. It may
    be given as an import path, ``"package.module:attribute"``, which is imported only when the
    backend is used: discovering every installed plugin then costs no driver imports. ``options``
    maps every keyword option the factory accepts to a one-line description.
    """

    name: str
    factory: Callable[..., Any] | str
    options: Mapping[str, str] = attrs.field(factory=dict)
    description: str = ""
    distribution: str = ""

    def load_factory(self) -> Callable[..., Any]:
        """The factory itself, importing its module if it was given as a path."""
        if not isinstance(self.factory, str):
            return self.factory
        from pyncette.lazy import import_path

        return import_path(self.factory)  # type: ignore[no-any-return]

    def provides(self, factory: Callable[..., Any]) -> bool:
        """Whether ``factory`` is this backend's factory, without importing a path that names another module."""
        if not isinstance(self.factory, str):
            return self.factory is factory
        return self.factory == f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"


@attrs.frozen(kw_only=True)
class TaskStatus:
    """What the store says about an instance; attached to tasks returned by ``get_task`` / ``list_tasks``.

    ``next_run`` is when the instance is next claimable: its next slot, or the time of a pending
    retry. ``retry_slot`` is the slot being retried while a retry is pending (``attempt`` failed
    attempts of it so far), else ``None``. ``last_slot`` is the latest slot that ran; a slot at or
    before it never runs again. ``catch_up`` and ``misfire_grace`` are the misfire policy the
    scheduler that read the status applies to a late slot of this instance (see
    :func:`pyncette.execution.misfire_policy`; a grace of ``None`` means never late). Datetimes
    are in UTC.
    """

    next_run: datetime.datetime
    paused: bool
    locked_until: datetime.datetime | None
    locked_by: str | None
    fencing_token: int
    attempt: int
    missed: int
    coalesced: int
    given_up: int
    retry_slot: datetime.datetime | None = None
    last_slot: datetime.datetime | None = None
    catch_up: CatchUp = CatchUp.ALL
    misfire_grace: datetime.timedelta | None = None


@attrs.frozen(kw_only=True)
class PlannedRun:
    """One run in a preview (see :meth:`pyncette.task.Task.planned_runs`).

    ``at`` is when the scheduler starts the run: the slot itself, the time of a pending retry, or
    the moment of the preview for a run that is already due. ``scheduled_at`` is the slot the run
    is for (what the task sees as ``context.scheduled_at``) and ``attempt`` its
    ``context.attempt``. Both datetimes are in the schedule's zone.
    """

    at: datetime.datetime
    scheduled_at: datetime.datetime
    attempt: int = 1


def fencing_token_after(previous: int, now: datetime.datetime) -> int:
    """The fencing token for a new claim: greater than ``previous`` and than ``now`` in microseconds.

    Tying tokens to the clock keeps them increasing even when an instance is deleted and
    registered again, which resets the stored counter.
    """
    return max(previous + 1, to_micros(now))


def to_micros(moment: datetime.datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime.datetime:
    """The aware UTC datetime ``micros`` microseconds after the Unix epoch."""
    return EPOCH + datetime.timedelta(microseconds=micros)


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
