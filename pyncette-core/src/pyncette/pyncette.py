"""The application object and its running context."""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import logging
import os
import random
import signal
import socket
import sys
import uuid
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence, TypeVar

import anyio
import attrs

from pyncette import options
from pyncette.batching import CompletionBatcher
from pyncette.clock import Clock, SystemClock
from pyncette.clock_sync import ClockSync
from pyncette.context import Context
from pyncette.errors import (
    ConfigurationError,
    TaskDefinitionError,
    TaskLockedException,
    TaskNotFoundError,
    describe_error,
    pyncette_error_in,
)
from pyncette.execution import Execution, InstanceData, Middleware, call_chain, misfire_policy, plan_resume
from pyncette.log_format import log_fields
from pyncette.model import CatchUp, ClaimedTask, RegisterOutcome, Registration, TaskKey, TaskState, TaskStatus, from_micros
from pyncette.plugins import create_plugin_manager, resolve_backend
from pyncette.repository import Repository, RepositoryFactory
from pyncette.task import Task, TaskFunc, canonical_json

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
FixtureFunc = Callable[..., Any]

POLL_BACKOFF_MAX = datetime.timedelta(seconds=30)
"""Default ``poll_backoff_max``: longest pause between polls of a scope whose store keeps failing."""
STORE_CALL_TIMEOUT = datetime.timedelta(seconds=30)
"""Default ``store_timeout``: a claim, commit or heartbeat that takes longer is abandoned (and retried):
a store call that hangs (a silent network) must not stop the loop or a task's heartbeats."""
MAX_CLAIM_ROUNDS_PER_TICK = 10_000
"""Bound on back-to-back claims of one tick in tests (catch-up of a long outage, huge backlog)."""


@attrs.frozen(kw_only=True)
class QueryResult:
    """A page of ``list_tasks``: the instances and the token of the next page (``None`` at the end)."""

    tasks: list[Task]
    continuation_token: str | None = None


class Pyncette:
    """A scheduler application: tasks, middlewares, fixtures and the backend they use.

    ``repository_factory`` (pyncette 1.x style) or ``backend`` (an installed backend's name)
    selects the store; with neither, the backend is inferred from the options given, or is the
    default: SQLite in memory when pyncette-sqlite is installed, otherwise the memory backend.
    Every other keyword is a backend option and is checked against the selected backend at once.

    Clock-skew correction (see :mod:`pyncette.clock_sync`): where the store has a clock, the app
    schedules on the store's time, re-estimating its offset every ``clock_sync_interval`` and
    logging a warning when it exceeds ``clock_skew_threshold``. ``clock_sync=None`` (the default)
    corrects every clock except a *virtual* one (a clock whose ``virtual`` attribute is true, such
    as :class:`pyncette.testing.FakeClock`, runs on simulated time that no store can correct);
    ``True`` corrects every clock, ``False`` none.

    While the store is unreachable, a scope's polls back off exponentially from ``poll_interval``
    to at most ``poll_backoff_max``, each pause jittered down to half its length; a claim, commit or
    heartbeat that takes longer than ``store_timeout`` counts as failed.
    """

    def __init__(
        self,
        repository_factory: RepositoryFactory | None = None,
        *,
        backend: str | None = None,
        poll_interval: datetime.timedelta | float = datetime.timedelta(seconds=1),
        concurrency_limit: int = 100,
        batch_size: int = 100,
        shutdown_grace: datetime.timedelta | float = datetime.timedelta(seconds=30),
        poll_backoff_max: datetime.timedelta | float = POLL_BACKOFF_MAX,
        store_timeout: datetime.timedelta | float = STORE_CALL_TIMEOUT,
        worker_id: str | None = None,
        plugins: Sequence[Any] = (),
        autoload_plugins: bool | None = None,
        configure_signals: bool = True,
        clock_sync: bool | None = None,
        clock_sync_interval: datetime.timedelta | float = datetime.timedelta(minutes=5),
        clock_skew_threshold: datetime.timedelta | float = datetime.timedelta(seconds=1),
        **backend_options: Any,
    ) -> None:
        self.poll_interval = options.duration("poll_interval", poll_interval)
        self.clock_sync = options.optional_flag("clock_sync", clock_sync)
        self.clock_sync_interval = options.duration("clock_sync_interval", clock_sync_interval)
        self.clock_skew_threshold = options.duration("clock_skew_threshold", clock_skew_threshold, allow_zero=True)
        self.shutdown_grace = options.duration("shutdown_grace", shutdown_grace, allow_zero=True)
        self.poll_backoff_max = options.duration("poll_backoff_max", poll_backoff_max)
        self.store_timeout = options.duration("store_timeout", store_timeout)
        self.concurrency_limit = options.integer("concurrency_limit", concurrency_limit, minimum=1)
        self.batch_size = options.integer("batch_size", batch_size, minimum=1)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.configure_signals = options.flag("configure_signals", configure_signals)
        autoload = options.optional_flag("autoload_plugins", autoload_plugins)
        self.plugin_manager = create_plugin_manager(plugins, autoload=autoload)
        self.backend_name, self.repository_factory = resolve_backend(
            self.plugin_manager, backend=backend, repository_factory=repository_factory, options=backend_options
        )
        self.backend_options = backend_options
        self._tasks: dict[str, Task] = {}
        self._middlewares: list[Middleware] = []
        self._fixtures: list[tuple[str, FixtureFunc]] = []
        self._chain: list[Middleware] | None = None
        self._implemented_hooks: dict[str, bool] = {}

    # definition

    def task(self, **kwargs: Any) -> Callable[[TaskFunc], Task]:
        """Decorator of a static task: ``@app.task(schedule="*/5 * * * *")`` or ``interval=...``."""
        return self._decorator(kwargs, dynamic=False)

    def dynamic_task(self, **kwargs: Any) -> Callable[[TaskFunc], Task]:
        """Decorator of a dynamic task template; instances are added with ``ctx.schedule_task``."""
        return self._decorator(kwargs, dynamic=True)

    def partitioned_task(self, **kwargs: Any) -> Callable[[TaskFunc], Task]:
        """A dynamic task whose instances are spread over ``partition_count`` partitions (default 8).

        ``enabled_partitions`` restricts which partitions this worker polls;
        ``partition_selector(partition_count, instance_name)`` maps an instance to its partition.
        """
        kwargs.setdefault("partition_count", 8)
        return self._decorator(kwargs, dynamic=True)

    def _decorator(self, kwargs: dict[str, Any], *, dynamic: bool) -> Callable[[TaskFunc], Task]:
        def register(func: TaskFunc) -> Task:
            task = Task.define(func, kwargs, dynamic=dynamic)
            if task.name in self._tasks:
                raise TaskDefinitionError(task.name, "a task with this name is already defined")
            self._tasks[task.name] = task
            return task

        return register

    def middleware(self, func: F) -> F:
        """Register ``async def middleware(context, next)``; middlewares run in registration order."""
        self._middlewares.append(func)
        self._chain = None
        return func

    def fixture(self, name: str | None = None) -> Callable[[F], F]:
        """Register an async generator fixture; its yielded value is ``context.<name>`` in every task.

        Fixtures are set up in definition order before the first poll and torn down in reverse
        order after the last running task finished. The function may take the app context.
        """

        def register(func: F) -> F:
            fixture_name = name or func.__name__
            if not inspect.isasyncgenfunction(func):
                raise ConfigurationError(f"fixture {fixture_name!r} must be an async generator function")
            if any(existing == fixture_name for existing, _ in self._fixtures):
                raise ConfigurationError(f"fixture {fixture_name!r} is already defined")
            self._fixtures.append((fixture_name, func))
            return func

        return register

    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def _implemented(self, hook: str) -> bool:
        """Whether any plugin implements ``hook``; checked once, so a per-execution hook costs nothing unused."""
        known = self._implemented_hooks.get(hook)
        if known is None:
            known = self._implemented_hooks[hook] = bool(getattr(self.plugin_manager.hook, hook).get_hookimpls())
        return known

    async def _call_chain(self, context: Context) -> None:
        if self._chain is None:
            contributed = [mw for result in self.plugin_manager.hook.pyncette_middlewares(app=self) for mw in result]
            self._chain = [*contributed, *self._middlewares]
        await call_chain(self._chain, context)

    # running

    @contextlib.asynccontextmanager
    async def create(
        self, context_items: Mapping[str, Any] | None = None, *, clock: Clock | None = None
    ) -> AsyncIterator[PyncetteContext]:
        """Open the store, set up fixtures and register static tasks; yield the running context."""
        factory_options = {**self.backend_options, "concurrency_limit": self.concurrency_limit, "batch_size": self.batch_size}
        self._implemented_hooks.clear()
        async with contextlib.AsyncExitStack() as stack:
            repository = await stack.enter_async_context(self.repository_factory(**factory_options))
            for wrappers in self.plugin_manager.hook.pyncette_repository_wrappers(app=self):
                for wrap in wrappers:
                    repository = wrap(repository)
            context_clock, clock_sync = await self._synchronized_clock(repository, clock)
            context = PyncetteContext(self, repository, context_clock, dict(context_items or {}), clock_sync=clock_sync)
            for name, func in self._fixtures:
                generator = func(context) if inspect.signature(func).parameters else func()
                context._items[name] = await generator.__anext__()
                stack.push_async_callback(_close_fixture, name, generator)
            await context._register_static_tasks()
            yield context

    async def _synchronized_clock(self, repository: Repository, clock: Clock | None) -> tuple[Clock, ClockSync | None]:
        """The clock a context runs on: ``clock`` (default: the system's), corrected to the store's where it has one."""
        base = clock or SystemClock()
        wanted = self.clock_sync if self.clock_sync is not None else not getattr(base, "virtual", False)
        if not wanted:
            return base, None
        sync = ClockSync(
            repository,
            base,
            interval=self.clock_sync_interval,
            warn_threshold=self.clock_skew_threshold,
            timeout=self.store_timeout,
        )
        if not await sync.start():
            return base, None
        return sync.clock, sync

    def main(self) -> None:
        """Run the app until SIGINT or SIGTERM: the first drains gracefully, a second exits at once.

        Logging is configured unless the program did it already: ``PYNCETTE_LOG_LEVEL`` (INFO) and
        ``PYNCETTE_LOG_FORMAT`` (``text`` or ``json``), see :mod:`pyncette.log_format`.

        A :class:`~pyncette.errors.PyncetteException` raised while the app starts (opening the
        store, setting up fixtures, registering the static tasks) is logged as one error line,
        without a traceback, and the process exits with status 1. Other exceptions, and any raised
        once the app runs, propagate.
        """
        from pyncette.log_format import configure_logging

        configure_logging()
        lifecycle = _Lifecycle()

        async def serve() -> None:
            async with anyio.create_task_group() as group:
                if self.configure_signals:
                    group.start_soon(_handle_signals, lifecycle)
                async with self.create() as context:
                    lifecycle.attach(context)
                    await context.run()
                group.cancel_scope.cancel()

        try:
            anyio.run(serve)
        except Exception as exc:
            error = pyncette_error_in(exc) if lifecycle.context is None else None
            if error is None:
                raise
            logger.error("cannot start: %s: %s", type(error).__name__, describe_error(error))
            raise SystemExit(1) from None


async def _close_fixture(name: str, generator: Any) -> None:
    try:
        await generator.__anext__()
    except StopAsyncIteration:
        return
    logger.error("fixture %r yielded more than once", name)


class _Lifecycle:
    """Carries a stop request that may arrive before the context exists (during fixture set-up)."""

    def __init__(self) -> None:
        self.context: PyncetteContext | None = None
        self.stopping = False

    def attach(self, context: PyncetteContext) -> None:
        self.context = context
        if self.stopping:
            context.shutdown()

    def stop(self) -> None:
        self.stopping = True
        if self.context is not None:
            self.context.shutdown()


async def _handle_signals(lifecycle: _Lifecycle) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if lifecycle.stopping:
                logger.warning("second %s: exiting at once", signal.Signals(signum).name)
                sys.exit(128 + signum)
            logger.info("%s: finishing running tasks, then stopping", signal.Signals(signum).name)
            lifecycle.stop()


class PyncetteContext:
    """A running app: the store, the poll loop, and the API to manage dynamic instances."""

    def __init__(
        self, app: Pyncette, repository: Repository, clock: Clock, items: dict[str, Any], *, clock_sync: ClockSync | None = None
    ) -> None:
        self.app = app
        self.repository = repository
        self.clock = clock
        self.clock_sync = clock_sync
        self._items = items
        self.last_tick: datetime.datetime | None = None
        self.last_successful_poll: datetime.datetime | None = None
        self.shutting_down = False
        self._next_check: dict[str, datetime.datetime] = {}
        self._scope_tasks: dict[str, Task] = {}
        self._failures: dict[str, int] = {}
        self._instances: dict[tuple[str, str], Task] = {}
        self._sleep_scope: anyio.CancelScope | None = None
        self._woken = False
        self._running = 0
        self._starved: set[str] = set()
        self._idle = anyio.Event()
        self._idle.set()
        self._batcher = CompletionBatcher(repository, clock, timeout=app.store_timeout)
        self._spawn: Callable[[Execution], None] | None = None
        self._undecodable: set[tuple[TaskKey, str]] = set()  # rows already reported as unreadable
        now = clock.now()
        for task in app.tasks:
            if task.enabled:
                for scope in task.scopes():
                    self._scope_tasks[scope] = task
                    self._next_check[scope] = now
        repository.set_wakeup_callback(self._note_next_run)

    def add_to_context(self, name: str, value: Any) -> None:
        """Make ``value`` available to every task as ``context.<name>``."""
        self._items[name] = value

    # the loop

    async def run(self) -> None:
        """Poll and execute until :meth:`shutdown`; then drain running tasks and return."""
        async with anyio.create_task_group() as service:
            service.start_soon(self._batcher.run)
            try:
                async with anyio.create_task_group() as executions:

                    def spawn(execution: Execution) -> None:
                        executions.start_soon(self._execute, execution)

                    self._spawn = spawn
                    while not self.shutting_down:
                        await self._resync_clock()
                        await self._poll_due(self.clock.now())
                        await self._sleep_until(self._wake_time())
                    self._spawn = None
                    with anyio.move_on_after(self.app.shutdown_grace.total_seconds()):
                        await self._idle.wait()
                    if self._running:
                        logger.warning("cancelling %d task(s) still running after the grace period", self._running)
                    executions.cancel_scope.cancel()
            finally:
                self._batcher.close()

    async def tick(self) -> int:
        """Poll once at the clock's current time, run what is due and wait for it; return the count.

        Claims repeat while the store reports more due instances, so a tick drains everything due
        now, including missed slots that a misfire policy runs one after another. Meant for tests
        driven by :class:`pyncette.testing.FakeClock`; a running app uses :meth:`run`.
        """
        executed = 0
        async with anyio.create_task_group() as service:
            service.start_soon(self._batcher.run)
            try:
                for _ in range(MAX_CLAIM_ROUNDS_PER_TICK):
                    batch: list[Execution] = []
                    self._spawn = batch.append
                    await self._resync_clock()
                    await self._poll_due(self.clock.now())
                    self._spawn = None
                    if not batch:
                        break
                    executed += len(batch)
                    async with anyio.create_task_group() as executions:
                        for execution in batch:
                            executions.start_soon(self._execute, execution)
            finally:
                self._batcher.close()
        self._batcher = CompletionBatcher(self.repository, self.clock, timeout=self.app.store_timeout)
        return executed

    def shutdown(self) -> None:
        """Stop polling; running tasks get ``shutdown_grace`` to finish. Safe to call repeatedly."""
        self.shutting_down = True
        self.wake()

    def wake(self) -> None:
        """Interrupt the loop's sleep so it polls at once."""
        self._woken = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    def next_wakeup(self) -> datetime.datetime:
        """When the loop will next poll (used by :class:`pyncette.testing.FakeClock` drivers)."""
        return self._wake_time()

    def _wake_time(self) -> datetime.datetime:
        now = self.clock.now()
        horizon = now + self.app.poll_interval
        if self.clock_sync is not None:
            horizon = min(horizon, self.clock_sync.resync_at)
        return min([horizon, *self._next_check.values()])

    async def _sleep_until(self, deadline: datetime.datetime) -> None:
        if self._woken:
            self._woken = False
            return
        with anyio.CancelScope() as scope:
            self._sleep_scope = scope
            await self.clock.sleep_until(deadline)
        self._sleep_scope = None
        self._woken = False

    async def _resync_clock(self) -> None:
        if self.clock_sync is not None:
            await self.clock_sync.resync_if_due()

    def _note_next_run(self, scope: str, when: datetime.datetime) -> None:
        current = self._next_check.get(scope)
        if current is not None and when < current:
            self._next_check[scope] = when
            self.wake()

    async def _poll_due(self, now: datetime.datetime) -> None:
        self.last_tick = now
        for scope, due_at in list(self._next_check.items()):
            if due_at <= now and not self.shutting_down:
                await self._poll_scope(scope, now)

    async def _poll_scope(self, scope: str, now: datetime.datetime) -> None:
        task = self._scope_tasks[scope]
        capacity = self.app.concurrency_limit - self._running
        if capacity <= 0:
            self._starved.add(scope)
            self._next_check[scope] = now + self.app.poll_interval
            return
        try:
            with anyio.fail_after(self.app.store_timeout.total_seconds()):
                result = await self.repository.claim_due(
                    now,
                    scope,
                    owner=self.app.worker_id,
                    lease_duration=task.lease_duration,
                    limit=1 if not task.dynamic else min(self.app.batch_size, capacity),
                    instance=None if task.dynamic else "",
                )
        except Exception as exc:
            failures = self._failures[scope] = self._failures.get(scope, 0) + 1
            backoff = min(self.app.poll_interval * 2 ** min(failures, 10), self.app.poll_backoff_max)
            backoff *= random.uniform(0.5, 1.0)
            logger.warning(
                "polling %s failed (%s); retrying in %.1fs",
                scope,
                describe_error(exc),
                backoff.total_seconds(),
                extra={**log_fields(task.name), "scope": scope, "failures": failures, "retry_in": backoff.total_seconds()},
            )
            self._next_check[scope] = now + backoff
            return
        self._failures.pop(scope, None)
        self.last_successful_poll = now
        next_check = now + self.app.poll_interval
        if result.next_due is not None:
            next_check = min(next_check, result.next_due)
        if result.more:
            next_check = now
            self.wake()
        self._next_check[scope] = next_check
        for claimed in result.claimed:
            execution = self._prepare(task, claimed)
            if execution is not None and self._spawn is not None:
                self._running += 1
                self._idle = anyio.Event() if self._idle.is_set() else self._idle
                self._spawn(execution)

    def _prepare(self, task: Task, claimed: ClaimedTask) -> Execution | None:
        state = claimed.state
        try:
            data = InstanceData.load(state.data)
        except Exception as exc:
            self._unreadable(task, state, f"its bookkeeping is unreadable ({exc})")
            return None
        if not task.dynamic:
            return Execution(self, task, claimed, data)
        instance = self._instances.get((task.name, state.spec))
        if instance is not None and instance.name != state.key.instance:
            # Instances that share a definition share everything but their name, unless jitter
            # makes their schedules differ.
            instance = attrs.evolve(instance, name=state.key.instance) if instance.jitter is None else None
        if instance is None:
            try:
                instance = task.from_spec(state.key.instance, json.loads(state.spec))
            except Exception as exc:
                self._unreadable(task, state, str(exc))
                return None
            if len(self._instances) > 50_000:
                self._instances.clear()
            self._instances[(task.name, state.spec)] = instance
        return Execution(self, instance, claimed, data)

    def _unreadable(self, task: Task, state: TaskState, problem: str) -> None:
        """Log a stored row this worker cannot run, once per row version; it stays in place, locked until its lease ends."""
        marker = (state.key, state.spec + "\0" + state.data)
        if marker not in self._undecodable:
            self._undecodable.add(marker)
            logger.error(
                "cannot run stored instance %s/%s: %s; leaving it in place",
                task.name,
                state.key.instance,
                problem,
                extra=log_fields(task.name, state.key.instance, fencing_token=state.fencing_token),
            )

    async def _execute(self, execution: Execution) -> None:
        try:
            await execution.run()
        except Exception:
            logger.exception("internal error while running %s", execution.task.full_name, extra=execution.log_fields())
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
            if self._starved:
                now = self.clock.now()
                for scope in self._starved:
                    self._next_check[scope] = min(self._next_check[scope], now)
                self._starved.clear()
                self.wake()

    async def _register_static_tasks(self) -> None:
        now = self.clock.now()
        registrations = []
        for task in self.app.tasks:
            if task.enabled and not task.dynamic:
                assert task.compiled_schedule is not None
                first = task.compiled_schedule.first_run(now)
                if first is None:
                    continue
                spec = canonical_json(task.name, "schedule", task.static_spec())
                registrations.append(Registration(key=task.key, spec=spec, data="{}", next_run=first))
        if registrations:
            await self.repository.register_tasks(now, registrations)

    # managing instances

    def _resolve(self, task: Task | str) -> Task:
        if isinstance(task, str):
            try:
                return self.app._tasks[task]
            except KeyError:
                raise TaskDefinitionError(task, "no such task is defined") from None
        return task.template

    async def schedule_task(self, task: Task | str, instance_name: str, /, *, force: bool = False, **kwargs: Any) -> Task:
        """Create or update the instance ``instance_name`` of a dynamic task; return it.

        ``task`` and ``instance_name`` are positional, so an instance may have arguments of those names.

        Keywords are as for :meth:`Task.instantiate`. If the instance exists with the same
        definition, its pending run is kept; a changed definition re-plans it. An instance locked
        by a running worker raises :class:`TaskLockedException` unless ``force`` is true, which
        takes it over (the running worker's lease becomes stale).
        """
        (instance,) = await self.schedule_tasks([(task, instance_name, kwargs)], force=force)
        return instance

    async def schedule_tasks(
        self, instances: Iterable[Task | tuple[Task | str, str, Mapping[str, Any]]], *, force: bool = False
    ) -> list[Task]:
        """Register many instances in as few store round trips as the backend allows.

        Each item is an instance (``template.instantiate(name, ...)``) or a tuple ``(template,
        name, keywords)``. Semantics per instance are those of :meth:`schedule_task`; every
        instance is registered even if some are locked, then :class:`TaskLockedException` names
        the locked ones.
        """
        now = self.clock.now()
        tasks: list[Task] = []
        registrations: list[Registration] = []
        for item in instances:
            if isinstance(item, Task):
                instance = item
            else:
                template, name, kwargs = item
                template = self._resolve(template)
                if not template.dynamic:
                    raise TaskDefinitionError(template.name, "schedule_task needs a dynamic task, not a static one")
                instance = template.instantiate(name, **kwargs)
            if not instance.is_instance:
                what = "a dynamic task template, not an instance" if instance.dynamic else "a static task"
                raise TaskDefinitionError(
                    instance.name,
                    f"schedule_tasks needs instances of dynamic tasks, got {what}; "
                    "give (template, instance_name, keywords) or template.instantiate(instance_name, ...)",
                )
            assert instance.compiled_schedule is not None
            try:
                first = instance.compiled_schedule.first_run(now)
            except OverflowError:
                raise TaskDefinitionError(
                    instance.full_name,
                    f"the first run is after year 9999 (interval={instance.interval}, schedule={instance.schedule!r})",
                ) from None
            if first is None:
                raise TaskDefinitionError(instance.full_name, "the schedule has no future run")
            spec = canonical_json(instance.full_name, "instance", instance.instance_spec())
            registrations.append(Registration(key=instance.key, spec=spec, data="{}", next_run=first, force=force))
            tasks.append(instance)
        if not registrations:
            return []
        outcomes = await self.repository.register_tasks(now, registrations)
        locked = []
        for instance, registration, outcome in zip(tasks, registrations, outcomes, strict=True):
            if outcome is RegisterOutcome.LOCKED:
                locked.append(instance)
            else:
                self._note_next_run(registration.key.task, registration.next_run)
        if locked:
            names = ", ".join(repr(t.full_name) for t in locked[:10])
            raise TaskLockedException(locked[0] if len(locked) == 1 else locked, f"locked by another worker: {names}")
        return tasks

    async def unschedule_task(self, task: Task | str, instance_name: str | None = None) -> None:
        """Remove a dynamic instance (``unschedule_task(instance)`` or ``(template, name)``). Idempotent."""
        key = self._key(task, instance_name)
        await self.repository.unregister_task(self.clock.now(), key)

    def _key(self, task: Task | str, instance_name: str | None) -> TaskKey:
        if isinstance(task, Task) and task.is_instance:
            return task.key
        return self._resolve(task).key_for(instance_name)

    async def get_task(self, task: Task | str, instance_name: str | None = None) -> Task | None:
        """The static task or the dynamic instance with its stored status (``.status``), or None."""
        key = self._key(task, instance_name)
        state = await self.repository.get_task(key)
        if state is None:
            return None
        return self._with_status(self._resolve(task if not isinstance(task, Task) else task.template), state)

    async def list_tasks(self, task: Task | str, limit: int | None = None, continuation_token: str | None = None) -> QueryResult:
        """One page of the instances of a dynamic task (all partitions), in a stable order."""
        template = self._resolve(task)
        if not template.dynamic:
            found = await self.get_task(template)
            return QueryResult(tasks=[found] if found else [])
        page_size = limit or self.app.batch_size
        scopes = template.all_scopes()
        index, inner = 0, None
        if continuation_token:
            try:
                index_text, _, inner_text = continuation_token.partition("|")
                index, inner = int(index_text), (inner_text or None)
            except ValueError:
                raise ConfigurationError(f"invalid continuation token {continuation_token!r}") from None
        tasks: list[Task] = []
        while index < len(scopes) and len(tasks) < page_size:
            page = await self.repository.list_tasks(scopes[index], limit=page_size - len(tasks), continuation=inner)
            tasks.extend(t for t in (self._with_status(template, s) for s in page.states) if t is not None)
            if page.continuation is None:
                index, inner = index + 1, None
            else:
                inner = page.continuation
        token = f"{index}|{inner or ''}" if index < len(scopes) else None
        return QueryResult(tasks=tasks, continuation_token=token)

    def _with_status(self, template: Task, state: TaskState) -> Task | None:
        try:
            task = template.from_spec(state.key.instance, json.loads(state.spec)) if template.dynamic else template
        except Exception as exc:
            logger.warning(
                "cannot read stored instance %s (%s)", state.key, exc, extra=log_fields(template.name, state.key.instance)
            )
            return None
        data = InstanceData.load(state.data)
        catch_up, grace = misfire_policy(task, self.app.poll_interval)
        status = TaskStatus(
            next_run=state.next_run,
            paused=state.paused,
            locked_until=state.locked_until,
            locked_by=state.locked_by,
            fencing_token=state.fencing_token,
            attempt=data.attempt,
            missed=data.missed,
            coalesced=data.coalesced,
            given_up=data.given_up,
            retry_slot=None if data.retry_slot is None else from_micros(data.retry_slot),
            last_slot=None if data.last_slot is None else from_micros(data.last_slot),
            catch_up=catch_up,
            misfire_grace=grace,
        )
        if not template.dynamic:
            task = attrs.evolve(template)
        task.status = status
        return task

    async def pause_task(self, task: Task | str, instance_name: str | None = None) -> None:
        """Pause a static task or a dynamic instance: it is not run until resumed."""
        key = self._key(task, instance_name)
        if not await self.repository.set_paused(self.clock.now(), key, True):
            raise TaskNotFoundError(key.task, key.instance)

    async def resume_task(
        self, task: Task | str, instance_name: str | None = None, *, catch_up: CatchUp | str | None = None
    ) -> None:
        """Resume a paused task; with ``catch_up``, apply that policy to the slots missed while paused.

        Without ``catch_up`` the instance continues from its stored next run (a pending retry
        included), and the task's own misfire policy decides at the next claim. With ``catch_up``
        the slots that came due while paused are resolved now, with a zero grace:
        ``"latest"`` continues from the latest missed slot (the others are counted as coalesced),
        ``"skip"`` from the next future slot (the dropped ones are counted as missed), ``"all"``
        from the first missed one. A pending retry is resolved by the same policy (see
        :func:`pyncette.execution.plan_resume`). The counts are stored with the instance and
        reported to plugins (``pyncette_on_misfire``); an instance whose last slot is dropped is
        removed. The task's own misfire policy still applies when the slot is claimed (a SKIP task
        drops a slot older than its ``misfire_grace`` whatever the resume asked for). A run still
        in progress (a live lease) decides the next slot itself when it commits, so ``catch_up``
        is not applied to it.
        """
        key = self._key(task, instance_name)
        now = self.clock.now()
        state = await self.repository.get_task(key)
        if state is None:
            raise TaskNotFoundError(key.task, key.instance)
        resolved = self._with_status(self._resolve(task if not isinstance(task, Task) else task.template), state)
        running = state.locked_until is not None and state.locked_until > now
        misfire = None
        if catch_up is not None and resolved is not None and not running:
            policy = CatchUp(catch_up.lower() if isinstance(catch_up, str) else catch_up)
            assert resolved.compiled_schedule is not None
            data = InstanceData.load(state.data)
            misfire = plan_resume(resolved.compiled_schedule, state.next_run, data, policy, now)
        if misfire is None:
            await self.repository.set_paused(now, key, False)
            self._note_next_run(key.task, state.next_run)
            return
        next_run = misfire.run or misfire.next_slot
        if next_run is None:
            await self.repository.unregister_task(now, key)
        else:
            await self.repository.set_paused(now, key, False, next_run, data.dump())
            self._note_next_run(key.task, next_run)
        if misfire.missed or misfire.coalesced:
            self.app.plugin_manager.hook.pyncette_on_misfire(
                task=resolved, instance=key.instance, missed=misfire.missed, coalesced=misfire.coalesced
            )
