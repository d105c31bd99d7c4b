"""Running one claimed instance: misfires, execution modes, heartbeats, retries, completion."""

from __future__ import annotations

import datetime
import json
import logging
import time
import zoneinfo
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Sequence

import anyio
import attrs

from pyncette.context import Context
from pyncette.errors import LeaseLostException, describe_error
from pyncette.log_format import log_fields
from pyncette.model import (
    CatchUp,
    ClaimedTask,
    Completion,
    ExecutionMode,
    FailureMode,
    Lease,
    PlannedRun,
    from_micros,
    to_micros,
)
from pyncette.schedule import Misfire, Schedule, resolve_misfire

if TYPE_CHECKING:
    from pyncette.pyncette import PyncetteContext
    from pyncette.task import Task

logger = logging.getLogger(__name__)

Middleware = Callable[[Context, Callable[[], Awaitable[None]]], Awaitable[None]]

COMMIT_ATTEMPTS = 5
"""A commit that fails on a store error is retried this many times before the slot is left to its lease."""


@attrs.define(kw_only=True)
class InstanceData:
    """The bookkeeping stored in ``TaskState.data``.

    ``last_slot`` is the latest slot that was run (epoch microseconds); a slot at or before it is
    never run again, whatever happens to the definition. ``attempt`` counts failed attempts of
    ``retry_slot`` (the slot being retried, in epoch microseconds, set only while a retry is
    pending); the counters only grow.
    """

    attempt: int = 0
    retry_slot: int | None = None
    last_slot: int | None = None
    missed: int = 0
    coalesced: int = 0
    given_up: int = 0

    @classmethod
    def load(cls, text: str) -> InstanceData:
        if not text or text == "{}":  # every instance that never ran, failed or missed a slot
            return cls()
        raw = json.loads(text)
        return cls(**{f.name: raw[f.name] for f in attrs.fields(cls) if f.name in raw})

    def dump(self) -> str:
        values = {name: value for name in _INSTANCE_DATA_FIELDS if (value := getattr(self, name))}
        return json.dumps(values, separators=(",", ":")) if values else "{}"


_INSTANCE_DATA_FIELDS = tuple(field.name for field in attrs.fields(InstanceData))


def effective_grace(task: Task, poll_interval: datetime.timedelta) -> datetime.timedelta | None:
    """The task's ``misfire_grace``, or its default: none for ALL, zero for LATEST, a poll interval for SKIP.

    Under SKIP a slot claimed within one poll interval of coming due is on time, not missed.
    """
    if task.misfire_grace is not None:
        return task.misfire_grace
    if task.catch_up is CatchUp.LATEST:
        return datetime.timedelta(0)
    if task.catch_up is CatchUp.SKIP:
        return poll_interval
    return None


def misfire_policy(task: Task, poll_interval: datetime.timedelta) -> tuple[CatchUp, datetime.timedelta | None]:
    """The catch-up policy and grace the scheduler applies to a late slot of ``task``.

    An instance carries its own policy options (given to ``schedule_task``, else its template's).
    """
    return task.catch_up, effective_grace(task, poll_interval)


def count_misfire(data: InstanceData, misfire: Misfire) -> bool:
    """Add the slots ``misfire`` missed and coalesced to ``data``; whether there were any."""
    data.missed += misfire.missed
    data.coalesced += misfire.coalesced
    return bool(misfire.missed or misfire.coalesced)


def plan_claim(
    schedule: Schedule,
    next_run: datetime.datetime,
    data: InstanceData,
    now: datetime.datetime,
    catch_up: CatchUp,
    grace: datetime.timedelta | None,
) -> Misfire:
    """What a claim at ``now`` of an instance stored with ``next_run`` and ``data`` runs.

    A pending retry runs its slot (``data.retry_slot``) and continues with the slot after it.
    Otherwise ``next_run`` is resolved by the misfire policy (:func:`resolve_misfire`), except
    that a slot at or before ``data.last_slot`` is never run again: the schedule then continues
    after ``last_slot``. Pure: ``data`` is not changed.
    """
    if data.retry_slot is not None:
        retry = from_micros(data.retry_slot)
        return Misfire(run=retry, next_slot=schedule.next_after(retry))
    misfire = resolve_misfire(schedule, next_run, now, catch_up, grace)
    if misfire.run is not None and data.last_slot is not None and to_micros(misfire.run) <= data.last_slot:
        # A definition changed after this slot's time had already been run (an update planned
        # before the commit, applied after it).
        return attrs.evolve(misfire, run=None, next_slot=schedule.next_after(from_micros(data.last_slot)))
    return misfire


def plan_runs(
    schedule: Schedule,
    next_run: datetime.datetime,
    data: InstanceData,
    after: datetime.datetime,
    catch_up: CatchUp,
    grace: datetime.timedelta | None,
    *,
    running: bool = False,
) -> Iterator[PlannedRun]:
    """The runs the scheduler makes of an instance stored with ``next_run`` and ``data``.

    Assumes that workers claim the instance from ``after`` on, each time the moment it is due,
    and that every run succeeds. Each claim is decided by :func:`plan_claim`, so a pending retry
    comes first and the schedule continues as the executor continues it; a slot already due at
    ``after`` is resolved by the misfire policy and, when it runs, runs at ``after``.
    ``running=True`` means a live lease holds the instance: the stored slot is being run (claimed
    when due) and is not listed. Possibly endless; ``data`` is not changed.
    """
    pending = InstanceData(attempt=data.attempt, retry_slot=data.retry_slot, last_slot=data.last_slot)
    zone = schedule.zone
    now = after
    due: datetime.datetime | None = next_run
    while due is not None:
        at = due if running else max(due, now)
        misfire = plan_claim(schedule, due, pending, at, catch_up, grace)
        if misfire.run is not None:
            if not running:
                yield PlannedRun(at=at.astimezone(zone), scheduled_at=misfire.run.astimezone(zone), attempt=pending.attempt + 1)
            pending.last_slot = max(to_micros(misfire.run), pending.last_slot or 0)
        pending.attempt, pending.retry_slot = 0, None
        now, due, running = max(at, now), misfire.next_slot, False


def plan_resume(
    schedule: Schedule, next_run: datetime.datetime, data: InstanceData, catch_up: CatchUp, now: datetime.datetime
) -> Misfire | None:
    """How a resume with ``catch_up`` at ``now`` treats the slots that came due while paused.

    Returns ``None`` when nothing changes (no slot came due, or the policy keeps a pending
    retry); otherwise the decision, whose ``run or next_slot`` is the next run to store (``None``:
    the schedule is exhausted), after updating ``data`` (counts, pending retry) to match. The
    slots are resolved with a zero grace, from the stored ``next_run``. A pending retry of slot
    *r* is resolved by the policy too: ``ALL`` keeps it; ``SKIP`` drops it (one more missed slot)
    and skips the slots after *r* that are due; ``LATEST`` folds it into the latest slot due
    (counted as coalesced), or keeps it when no later slot is due.
    """
    zero = datetime.timedelta(0)
    if data.retry_slot is not None:
        if catch_up is CatchUp.ALL:
            return None
        retry = from_micros(data.retry_slot)
        if catch_up is CatchUp.LATEST:
            misfire = resolve_misfire(schedule, retry, now, CatchUp.LATEST, zero)
            if misfire.run == retry:
                return None
        else:
            following = schedule.next_after(retry)
            if following is not None and following <= now:
                after = resolve_misfire(schedule, following, now, CatchUp.SKIP, zero)
            else:
                after = Misfire(run=None, next_slot=following)
            misfire = attrs.evolve(after, missed=after.missed + 1)
        data.attempt, data.retry_slot = 0, None
    elif next_run <= now:
        misfire = resolve_misfire(schedule, next_run, now, catch_up, zero)
    else:
        return None
    count_misfire(data, misfire)
    return misfire


def in_task_zone(task: Task, moment: datetime.datetime) -> datetime.datetime:
    zone = task.timezone
    return moment.astimezone(zoneinfo.ZoneInfo(zone)) if zone else moment


@attrs.define(eq=False)
class Execution:
    """One claimed instance on its way through the scheduler (one object per claim).

    ``data`` is the claimed state's bookkeeping, already parsed by the caller (which refuses a
    claim whose bookkeeping is unreadable).
    """

    app_context: PyncetteContext
    task: Task
    claimed: ClaimedTask
    data: InstanceData
    _lease: Lease = attrs.field(init=False)
    _released: bool = attrs.field(init=False, default=False)
    _lost: bool = attrs.field(init=False, default=False)
    _context: Context | None = attrs.field(init=False, default=None)
    _started: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self._lease = self.claimed.lease

    def log_fields(self, outcome: str | None = None, slot: datetime.datetime | None = None) -> dict[str, Any]:
        """The structured fields of a log record about this execution (see :func:`pyncette.log_format.log_fields`)."""
        context = self._context
        return log_fields(
            self.task.template.name,
            self.claimed.state.key.instance,
            scheduled_at=context.scheduled_at if context is not None else slot,
            fencing_token=self._lease.token,
            attempt=context.attempt if context is not None else None,
            outcome=outcome,
        )

    @property
    def _hooks(self) -> Any:
        return self.app_context.app.plugin_manager.hook

    async def run(self) -> None:
        """Run the instance; if cancelled (shutdown past its grace period), release its lease."""
        try:
            await self._run()
        except anyio.get_cancelled_exc_class():
            if not self._released:
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    state = self.claimed.state
                    release = Completion(key=state.key, lease=self._lease, next_run=state.next_run, data=state.data)
                    await self.app_context.repository.complete_tasks(self.app_context.clock.now(), [release])
                    logger.info(
                        "task %s cancelled at shutdown; its lease was released", self.task.full_name, extra=self.log_fields()
                    )
            raise

    async def _run(self) -> None:
        state, lease = self.claimed.state, self.claimed.lease
        self._lease = lease
        template = self.task.template
        now = self.app_context.clock.now()
        data = self.data
        schedule = self.task.compiled_schedule
        assert schedule is not None
        catch_up, grace = misfire_policy(self.task, self.app_context.app.poll_interval)
        misfire = plan_claim(schedule, state.next_run, data, now, catch_up, grace)
        slot, next_slot = misfire.run, misfire.next_slot
        if count_misfire(data, misfire):
            self._hooks.pyncette_on_misfire(
                task=self.task, instance=state.key.instance, missed=misfire.missed, coalesced=misfire.coalesced
            )
        if slot is None:
            await self._complete(lease, next_slot, data)
            return
        data.last_slot = max(to_micros(slot), data.last_slot or 0)
        if template.execution_mode is ExecutionMode.AT_MOST_ONCE:
            data.attempt, data.retry_slot = 0, None
            if not await self._complete(lease, next_slot, data):
                return
            await self._run_body(slot, data, None)
            return
        if self.app_context.clock.now() >= lease.locked_until:
            # The worker was too busy to start the task within its lease; another worker may have
            # claimed it since. Starting now could run it twice at once, so leave it to a new claim.
            logger.warning(
                "task %s: lease expired before the task could start; it is left for a new claim",
                self.task.full_name,
                extra=self.log_fields(slot=slot),
            )
            return
        succeeded = await self._run_body(slot, data, lease)
        if succeeded is None:
            return
        if succeeded:
            data.attempt, data.retry_slot = 0, None
            await self._complete(self._lease, next_slot, data, outcome="succeeded")
        else:
            await self._failed(slot, next_slot, data)

    async def _failed(self, slot: datetime.datetime, next_slot: datetime.datetime | None, data: InstanceData) -> None:
        task, failure_mode = self.task, self.task.template.failure_mode
        attempts = data.attempt + 1
        gives_up = failure_mode is FailureMode.COMMIT or (task.max_attempts is not None and attempts >= task.max_attempts)
        if gives_up:
            data.attempt, data.retry_slot = 0, None
            data.given_up += 1
            await self._complete(self._lease, next_slot, data, outcome="given_up")
            return
        now = self.app_context.clock.now()
        try:
            delay = min(task.retry_delay * task.retry_backoff ** (attempts - 1), task.retry_max_delay)
        except OverflowError:  # endless retries: the back-off outgrew a float or a timedelta long ago
            delay = task.retry_max_delay
        retry_at = now + delay
        if failure_mode is FailureMode.NONE:
            retry_at = max(retry_at, self._lease.locked_until)
        data.attempt, data.retry_slot = attempts, to_micros(slot)
        await self._complete(self._lease, retry_at, data, outcome="failed")

    # the body

    async def _run_body(self, slot: datetime.datetime, data: InstanceData, lease: Lease | None) -> bool | None:
        """Run middlewares and the task; True on success, False on failure, None if cancelled by lease loss."""
        self._lease = lease if lease is not None else self.claimed.lease
        context = Context(
            app_context=self.app_context,
            task=self.task,
            scheduled_at=in_task_zone(self.task, slot),
            attempt=data.attempt + 1,
            lease=lease,
            heartbeat=self._heartbeat if lease is not None else None,
        )
        self._context = context
        self._started = time.monotonic()
        interval = None
        if lease is not None:
            if self.app_context.app._implemented("pyncette_heartbeat_interval"):
                interval = self._hooks.pyncette_heartbeat_interval(
                    task=self.task, lease_duration=self.task.template.lease_duration
                )
            if interval is None:
                interval = self.task.template.heartbeat_interval
        self._lost = False
        error: Exception | None = None
        if not interval:
            try:
                await self.app_context.app._call_chain(context)
            except Exception as exc:
                error = exc
        else:
            async with anyio.create_task_group() as group:

                async def body() -> None:
                    nonlocal error
                    try:
                        await self.app_context.app._call_chain(context)
                    except Exception as exc:
                        error = exc
                    finally:
                        group.cancel_scope.cancel()

                group.start_soon(self._heartbeat_loop, interval, group.cancel_scope)
                group.start_soon(body)
        if error is not None:
            logger.error(
                "task %s (scheduled at %s) failed",
                self.task.full_name,
                slot.isoformat(),
                exc_info=error,
                extra=self.log_fields(outcome="failed"),
            )
            if lease is None:
                self._report("failed")
            return False
        if self._lost and self.task.template.cancel_on_lease_lost:
            self._report("lease_lost")
            return None
        if lease is None:
            self._report("succeeded")
        return True

    async def _heartbeat(self) -> Lease:
        template = self.task.template
        with anyio.fail_after(self.app_context.app.store_timeout.total_seconds()):
            extended = await self.app_context.repository.extend_lease(
                self.app_context.clock.now(), self.claimed.state.key, self._lease, template.lease_duration
            )
        if extended is None:
            self._lease_lost()
            raise LeaseLostException(self.task)
        self._lease = extended
        self._hooks.pyncette_on_heartbeat(context=self._context, lease=extended)
        return extended

    def _lease_lost(self) -> None:
        """Record that this execution's lease is lost; plugins hear of it once per execution."""
        if not self._lost:
            self._lost = True
            self._hooks.pyncette_on_lease_lost(context=self._context)

    async def _heartbeat_loop(self, interval: datetime.timedelta, body: anyio.CancelScope) -> None:
        clock = self.app_context.clock
        while True:
            await clock.sleep_until(clock.now() + interval)
            assert self._context is not None
            try:
                await self._context.heartbeat()
            except LeaseLostException:
                logger.warning(
                    "task %s lost its lease while running", self.task.full_name, extra=self.log_fields(outcome="lease_lost")
                )
                if self.task.template.cancel_on_lease_lost:
                    body.cancel()
                return
            except Exception as exc:
                logger.warning(
                    "task %s: lease extension failed: %s", self.task.full_name, describe_error(exc), extra=self.log_fields()
                )
                self._hooks.pyncette_on_lease_extension_failed(context=self._context, error=exc)

    # completion

    async def _complete(
        self, lease: Lease, next_run: datetime.datetime | None, data: InstanceData, outcome: str | None = None
    ) -> bool:
        completion = Completion(key=self.claimed.state.key, lease=lease, next_run=next_run, data=data.dump())
        self._released = True
        delay = 0.05
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                applied = await self.app_context._batcher.complete(completion)
                break
            except Exception as exc:
                if attempt == COMMIT_ATTEMPTS - 1:
                    logger.error(
                        "task %s: could not commit (%s); its lease will expire",
                        self.task.full_name,
                        describe_error(exc),
                        extra=self.log_fields(outcome),
                    )
                    return False
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "task %s: commit failed (%s), retrying",
                        self.task.full_name,
                        describe_error(exc),
                        extra=self.log_fields(outcome),
                    )
                await anyio.sleep(delay)
                delay *= 2
        if not applied:
            logger.warning("task %s: lease lost before commit", self.task.full_name, extra=self.log_fields("lease_lost"))
            if outcome is not None:
                self._lease_lost()
                self._report("lease_lost")
            return False
        if outcome is not None:
            self._report(outcome)
        if next_run is not None:
            self.app_context._note_next_run(self.claimed.state.key.task, next_run)
        return True

    def _report(self, outcome: str) -> None:
        if self._context is None or not self.app_context.app._implemented("pyncette_on_execution_finished"):
            return
        duration = datetime.timedelta(seconds=time.monotonic() - self._started)
        self._hooks.pyncette_on_execution_finished(context=self._context, outcome=outcome, duration=duration)


async def call_chain(middlewares: Sequence[Middleware], context: Context) -> None:
    """Run ``middlewares`` around the task function, outermost first."""

    async def step(index: int) -> None:
        if index == len(middlewares):
            await context.task.func(context)
        else:
            await middlewares[index](context, lambda: step(index + 1))

    await step(0)
