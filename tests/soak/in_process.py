"""The soak in one process, for the memory backend: workers are apps in the driver's event loop.

Every worker is its own :class:`~pyncette.Pyncette` app (the soak app of
:mod:`tests.support.soak_worker`, its own worker id and ledger file) running in the driver's event
loop; all of them reach one shared :class:`~pyncette.memory.MemoryRepository` through a
:class:`WorkerStore` of their own, which is what makes their faults:

- a kill severs the worker's store, so every later call raises :class:`WorkerKilled`, then cancels
  the worker and waits until its tasks ended: the dead worker releases no lease and commits
  nothing, as if its process had died (what it logs while it unwinds is dropped);
- a cut makes the store of every worker that is up fail calls at random with
  :class:`~pyncette.errors.BackendError` for a short while, half of them before the call reached
  the store and half after it took effect (a lost answer), as a dropped connection does.

The driver (:mod:`tests.soak.driver`) and the checker are the same as for worker processes; the
time is the real clock, so the checker's timestamps mean what they do there.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import logging
import random
import time
from pathlib import Path
from typing import IO, Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping, TypeVar

import anyio
import anyio.abc
import attrs

from pyncette import Pyncette
from pyncette.errors import BackendError
from pyncette.memory import MemoryRepository
from pyncette.pyncette import PyncetteContext
from pyncette.repository import Repository, RepositoryFactory, RepositoryWrapper, WakeupCallback
from tests.soak.driver import LEASE, STEADY, SoakResult, soak
from tests.support.soak_worker import build_soak_app, open_ledger

T = TypeVar("T")


class WorkerKilled(BackendError):
    """Raised by every store call of a killed worker, whose tasks are being cancelled."""


class WorkerStore(RepositoryWrapper):
    """One worker's connection to the shared store ``inner``; :meth:`sever` kills it, :meth:`disturb` makes it fail.

    While disturbed, each call fails with :class:`~pyncette.errors.BackendError` with probability
    ``failure_rate``: half of those before reaching ``inner``, half after it took effect. Wake-up
    callbacks are not passed on (the store is shared; the memory backend has none): workers poll.
    """

    def __init__(self, inner: Repository, rng: random.Random, failure_rate: float) -> None:
        super().__init__(inner)
        self.rng = rng
        self.failure_rate = failure_rate
        self.severed = False
        self.disturbed_until = 0.0

    def sever(self) -> None:
        self.severed = True

    def disturb(self, seconds: float) -> None:
        self.disturbed_until = time.monotonic() + seconds

    def set_wakeup_callback(self, callback: WakeupCallback) -> None:
        del callback

    async def around(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        if self.severed:
            raise WorkerKilled
        fails = time.monotonic() < self.disturbed_until and self.rng.random() < self.failure_rate
        after = fails and self.rng.random() < 0.5
        if fails and not after:
            raise BackendError("soak cut: the call did not reach the store")
        result = await call()
        if self.severed:
            raise WorkerKilled
        if after:
            raise BackendError("soak cut: the answer was lost")
        return result


def factory_of(repository: Repository) -> RepositoryFactory:
    """A repository factory that hands out ``repository`` and leaves it open."""
    return functools.partial(_opened, repository)


@contextlib.asynccontextmanager
async def _opened(repository: Repository, **_options: Any) -> AsyncIterator[Repository]:
    yield repository


@attrs.define(eq=False)
class _Worker:
    number: int
    store: WorkerStore
    ledger: IO[str]
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    context: PyncetteContext | None = None
    log: list[str] = attrs.field(factory=list)


_current: contextvars.ContextVar[_Worker | None] = contextvars.ContextVar("soak_worker", default=None)


class _WorkerLog(logging.Handler):
    """Files each pyncette log record under the worker whose task logged it."""

    def emit(self, record: logging.LogRecord) -> None:
        worker = _current.get()
        if worker is not None and not worker.store.severed:  # a dead worker says nothing more
            worker.log.append(self.format(record))


@attrs.define(eq=False)
class InProcessFleet:
    """Workers in this event loop over the shared store ``shared`` (see the module docstring).

    :meth:`running` must be entered for workers to run. A cut lasts ``cut_seconds``.
    """

    ledger: Path
    config: Mapping[str, Any]
    shared: Repository
    rng: random.Random
    cut_seconds: float = 1.0
    failure_rate: float = 0.5
    stop_timeout: float = 30.0
    workers: dict[int, _Worker] = attrs.field(factory=dict)
    _numbers: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    _group: anyio.abc.TaskGroup | None = None

    @property
    def can_cut(self) -> bool:
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        handler = _WorkerLog()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("pyncette")
        logger.addHandler(handler)
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            self._group = None
            logger.removeHandler(handler)

    async def start_worker(self) -> int:
        assert self._group is not None, "start workers inside running()"
        number = next(self._numbers)
        store = WorkerStore(self.shared, self.rng, self.failure_rate)
        worker = _Worker(number, store, open_ledger(self.ledger, number))
        app, _ = build_soak_app(self.config, worker=number, ledger=worker.ledger, repository_factory=factory_of(store))
        self.workers[number] = worker
        self._group.start_soon(self._serve, worker, app)
        return number

    async def _serve(self, worker: _Worker, app: Pyncette) -> None:
        _current.set(worker)
        try:
            with worker.scope:
                try:
                    async with app.create() as context:
                        worker.context = context
                        await context.run()
                except WorkerKilled:  # killed while it registered its static tasks
                    assert worker.store.severed
        finally:
            worker.ledger.close()
            worker.done.set()

    def live(self) -> list[int]:
        return [n for n, w in self.workers.items() if not w.done.is_set() and not w.store.severed]

    async def kill(self, worker: int) -> None:
        victim = self.workers[worker]
        victim.store.sever()
        victim.scope.cancel()
        with anyio.fail_after(10):
            await victim.done.wait()

    async def cut(self) -> float:
        """Disturb the workers that are up; one still starting is left alone.

        ``app.create()`` fails on a store error by design (a supervisor would restart the worker),
        which is not what the soak is about; a proxy cut likewise spares connections not yet made.
        """
        for number in self.live():
            if self.workers[number].context is not None:
                self.workers[number].store.disturb(self.cut_seconds)
        return time.time() + self.cut_seconds

    async def stop(self) -> dict[int, str]:
        for number in self.live():
            worker = self.workers[number]
            if worker.context is not None:
                worker.context.shutdown()
            else:
                worker.scope.cancel()
        with anyio.move_on_after(self.stop_timeout):
            for worker in self.workers.values():
                await worker.done.wait()
        for number in self.live():
            await self.kill(number)
        return {n: "\n".join(w.log) for n, w in self.workers.items()}


def run_memory_soak(
    workdir: Path,
    *,
    duration: float,
    workers: int = 3,
    kill_every: float = 3.0,
    cut_every: float = 4.0,
    seed: int | None = None,
    steady: int = 2 * STEADY,
) -> SoakResult:
    """Soak ``workers`` in-process workers on one memory store for ``duration`` seconds and judge it.

    Kills come every ``kill_every`` seconds on average and there are twice as many never-changed
    instances as for processes, so that a 30 s run has as many faults and judged slots as a 45 s
    run of processes (which take a while to start); cuts come every ``cut_every`` seconds.
    """
    seed = seed if seed is not None else random.randrange(2**32)
    shared = MemoryRepository()
    config = {"lease": LEASE}
    fleet = InProcessFleet(workdir / "ledger", config, shared, random.Random(seed ^ 0x5EED))
    driver_app = build_soak_app(config, repository_factory=factory_of(shared))
    return soak(
        fleet,
        driver_app,
        duration=duration,
        workers=workers,
        kill_every=kill_every,
        cut_every=cut_every,
        seed=seed,
        steady=steady,
    )
