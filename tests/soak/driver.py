"""The soak driver: workers, a stream of schedule changes, crashed workers and cut connections.

:func:`soak` starts ``workers`` workers of a :class:`~tests.soak.fleet.Fleet` on one store, then
for the active part of ``duration`` keeps creating, updating, re-registering, pausing, resuming and
unscheduling dynamic instances of both execution modes, kills a random worker and starts a new
one, and cuts every worker's store connection. :func:`run_soak` does this with worker processes
(SIGKILL; cuts through a :class:`~tests.support.tcp_proxy.TcpProxy` when the store is networked),
:func:`tests.soak.in_process.run_memory_soak` with workers in one process over one memory store.
The last :data:`GRACE` seconds are quiet, so that every slot that came due during the faults has
time to run. Every action goes to the driver log (:class:`~tests.soak.checker.DriverEvent`) with
the time it was issued and the time it returned; the workers' ledger and that log are then judged
by :func:`tests.soak.checker.check`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import anyio
import attrs

from pyncette import Pyncette, Task
from pyncette.errors import TaskLockedException
from tests.soak.checker import AT_LEAST_ONCE, AT_MOST_ONCE, DriverEvent, Run, Verdict, check
from tests.soak.fleet import Fleet, ProcessFleet
from tests.support.soak_worker import DYNAMIC_ALO, DYNAMIC_AMO, STATIC_ALO, build_soak_app
from tests.support.tcp_proxy import TcpProxy

LEASE = 3.0
"""Lease of every task: short, so that a killed worker's slot is re-run within the grace period."""
GRACE = 12.0
"""How long a due AT_LEAST_ONCE slot may wait despite kills and cuts (lease, restart, back-off)."""
EVERY = (1, 2, 3, 5)
"""Recurring instances run on ``* * * * * */N`` (every N seconds) cron schedules, N dividing 60 so slots are epoch multiples."""
STEADY = 4
"""Recurring instances per mode that are never changed, only re-registered with the same definition."""


@attrs.define(kw_only=True)
class SoakResult:
    verdict: Verdict
    runs: list[Run]
    events: list[DriverEvent]
    worker_logs: dict[int, str]

    def totals(self) -> dict[str, object]:
        return self.verdict.totals()


@attrs.define(kw_only=True)
class _Instance:
    name: str
    mode: str
    every: int | None
    execute_at: float | None = None
    version: int = 0
    sleep: float = 0.05
    paused: bool = False
    steady: bool = False

    @property
    def full_name(self) -> str:
        return f"{DYNAMIC_ALO if self.mode == AT_LEAST_ONCE else DYNAMIC_AMO}/{self.name}"


@attrs.define(eq=False)
class _Driver:
    fleet: Fleet
    rng: random.Random
    events: list[DriverEvent] = attrs.field(factory=list)
    instances: dict[str, _Instance] = attrs.field(factory=dict)
    counter: int = 0
    max_live: int | None = None
    """At most this many changing recurring instances at once (None: no bound); keeps the load within a slow store's capacity."""

    # workers

    async def start_worker(self) -> None:
        worker = await self.fleet.start_worker()
        self.events.append(DriverEvent(op="start_worker", at=time.time(), worker=worker))

    async def kill_one(self) -> None:
        victim = self.rng.choice(self.fleet.live())
        await self.fleet.kill(victim)
        # Logged once the worker is dead: every run it started began before this time.
        self.events.append(DriverEvent(op="kill", at=time.time(), worker=victim))

    async def stop_workers(self) -> dict[int, str]:
        self.events.append(DriverEvent(op="stop", at=time.time()))
        return await self.fleet.stop()

    async def cut(self) -> None:
        # Logged when the cut is over: a store call it failed lies between a run's start and this time.
        self.events.append(DriverEvent(op="cut", at=await self.fleet.cut()))

    # the store, through the driver's own connection (never cut)

    async def schedule(self, context: Any, templates: Mapping[str, Any], instance: _Instance, *, changed: bool) -> None:
        template = templates[DYNAMIC_ALO if instance.mode == AT_LEAST_ONCE else DYNAMIC_AMO]
        if instance.execute_at is not None:
            when: dict[str, Any] = {"execute_at": datetime.datetime.fromtimestamp(instance.execute_at, datetime.timezone.utc)}
        else:
            when = {"schedule": f"* * * * * */{instance.every}"}
        force = changed and self.rng.random() < 0.2
        await self._call(
            "schedule",
            instance,
            context.schedule_task(template, instance.name, force=force, version=instance.version, sleep=instance.sleep, **when),
            every=instance.every,
            execute_at=instance.execute_at,
            changed=changed,
        )

    async def _call(self, op: str, instance: _Instance, call: Any, **details: Any) -> bool:
        issued = time.time()
        error = None
        try:
            await call
        except TaskLockedException:
            error = "locked"
        except Exception as exc:  # an unknown outcome: the checker stops judging this instance
            error = repr(exc)
            self.instances.pop(instance.name, None)
        event = DriverEvent(
            op=op,
            at=time.time(),
            issued=issued,
            instance=instance.full_name,
            mode=instance.mode,
            ok=error is None,
            error=error,
            **details,
        )
        self.events.append(event)
        return event.ok

    def new_instance(self, *, once: bool, steady: bool = False, mode: str | None = None) -> _Instance:
        self.counter += 1
        mode = mode or self.rng.choice((AT_LEAST_ONCE, AT_MOST_ONCE))
        if once:
            due = time.time() + self.rng.uniform(0.3, 4.0)
            return _Instance(name=f"o{self.counter:05d}", mode=mode, every=None, execute_at=round(due, 3), sleep=self.sleep(None))
        every = self.rng.choice(EVERY)
        return _Instance(
            name=f"r{self.counter:05d}", mode=mode, every=every, steady=steady, sleep=0.05 if steady else self.sleep(every)
        )

    def sleep(self, every: int | None) -> float:
        """How long a run sleeps: shorter than the period, or catching up after a kill never ends."""
        return round(self.rng.uniform(0, 1.2 if every is None else min(1.2, 0.3 * every)), 2)

    async def step(self, context: Any, templates: Mapping[str, Any]) -> None:
        """One random change of the dynamic instances."""
        churn = [i for i in self.instances.values() if not i.steady]
        recurring = [i for i in churn if i.execute_at is None]
        action = self.rng.choices(
            ["create", "once", "update", "same", "pause", "resume", "unschedule"], weights=[3, 4, 3, 2, 1, 2, 3]
        )[0]
        if action == "create" and self.max_live is not None and len(recurring) >= self.max_live:
            action = "unschedule"
        if action in ("create", "once") or not churn:
            instance = self.new_instance(once=action == "once")
            if await self._call_schedule(context, templates, instance, changed=True):
                self.instances[instance.name] = instance
        elif action == "update" and recurring:
            instance = self.rng.choice(recurring)
            every = self.rng.choice(EVERY)
            updated = attrs.evolve(instance, version=instance.version + 1, every=every, sleep=self.sleep(every))
            if await self._call_schedule(context, templates, updated, changed=True):
                self.instances[instance.name] = attrs.evolve(updated, paused=instance.paused)
        elif action == "same":
            instance = self.rng.choice(list(self.instances.values()))
            if instance.execute_at is None or instance.execute_at > time.time() + 0.5:
                await self._call_schedule(context, templates, instance, changed=False)
        elif action == "pause" and recurring:
            instance = self.rng.choice(recurring)
            if not instance.paused and await self._call(
                "pause", instance, context.pause_task(self._template(templates, instance), instance.name)
            ):
                instance.paused = True
        elif action == "resume":
            paused = [i for i in recurring if i.paused]
            if paused:
                instance = self.rng.choice(paused)
                resumed = context.resume_task(self._template(templates, instance), instance.name, catch_up="skip")
                if await self._call("resume", instance, resumed):
                    instance.paused = False
        elif action == "unschedule":
            instance = self.rng.choice(churn)
            if await self._call(
                "unschedule", instance, context.unschedule_task(self._template(templates, instance), instance.name)
            ):
                del self.instances[instance.name]

    async def _call_schedule(self, context: Any, templates: Mapping[str, Any], instance: _Instance, *, changed: bool) -> bool:
        before = len(self.events)
        await self.schedule(context, templates, instance, changed=changed)
        return self.events[before].ok

    @staticmethod
    def _template(templates: Mapping[str, Any], instance: _Instance) -> Any:
        return templates[DYNAMIC_ALO if instance.mode == AT_LEAST_ONCE else DYNAMIC_AMO]


def read_ledger(ledger: Path) -> list[Run]:
    """The runs the workers recorded; a line cut short by SIGKILL is skipped."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, float] = {}
    outcomes: dict[str, str] = {}
    for path in sorted(ledger.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record["ev"] == "start":
                starts[record["run"]] = record
            elif record["ev"] == "end":
                ends[record["run"]] = record["t"]
            elif record["ev"] == "outcome":
                outcomes[record["run"]] = record["outcome"]
    return [
        Run(
            run_id=run,
            instance=record["instance"],
            mode=record["mode"],
            slot=record["slot"],
            token=record["token"],
            worker=record["pid"],
            start=record["t"],
            end=ends.get(run),
            outcome=outcomes.get(run),
        )
        for run, record in starts.items()
    ]


def run_soak(
    backend: str,
    options: Mapping[str, Any],
    workdir: Path,
    *,
    duration: float,
    address: tuple[str, int] | None = None,
    via_proxy: Any = None,
    environment: Mapping[str, str] | None = None,
    workers: int = 3,
    kill_every: float = 6.0,
    cut_every: float = 4.0,
    seed: int | None = None,
    max_live: int | None = None,
) -> SoakResult:
    """Soak worker processes on a shared store for ``duration`` seconds (the last :data:`GRACE` quiet) and judge it.

    With ``address`` and ``via_proxy`` (the worker options for a proxy port), the workers reach
    the store through a :class:`~tests.support.tcp_proxy.TcpProxy` whose connections are cut.
    """
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(TcpProxy(*address)) if address is not None and via_proxy is not None else None
        worker_options = via_proxy(proxy.port) if proxy is not None else options
        fleet = ProcessFleet(
            workdir / "ledger",
            {"backend": backend, "options": dict(worker_options), "lease": LEASE},
            environment or {},
            proxy,
        )
        driver_app = build_soak_app({"backend": backend, "options": dict(options)})
        return soak(
            fleet,
            driver_app,
            duration=duration,
            workers=workers,
            kill_every=kill_every,
            cut_every=cut_every,
            seed=seed,
            max_live=max_live,
        )


def soak(
    fleet: Fleet,
    driver_app: tuple[Pyncette, Mapping[str, Task]],
    *,
    duration: float,
    workers: int,
    kill_every: float,
    cut_every: float,
    seed: int | None,
    steady: int = STEADY,
    max_live: int | None = None,
) -> SoakResult:
    """Drive ``fleet`` for ``duration`` seconds through ``driver_app`` (the soak app without a worker), then judge the ledger.

    ``steady`` recurring instances per mode are never changed (see :data:`STEADY`); ``max_live``
    bounds the changing recurring ones (a store slower than the churn falls behind, and a slot
    still waiting at the stop is judged missing).

    The ledger, the driver log (``driver.jsonl``) and the totals with the seed (``totals.json``)
    are kept next to each other, in the parent of ``fleet.ledger``.
    """
    workdir = fleet.ledger.parent
    fleet.ledger.mkdir(parents=True, exist_ok=True)
    seed = seed if seed is not None else random.randrange(2**32)
    driver = _Driver(fleet, random.Random(seed), max_live=max_live)
    logs = anyio.run(_drive, driver, driver_app, duration, workers, kill_every, cut_every, steady)
    runs = read_ledger(fleet.ledger)
    verdict = check(runs, driver.events, grace=GRACE)
    (workdir / "driver.jsonl").write_text("".join(json.dumps(attrs.asdict(e)) + "\n" for e in driver.events))
    (workdir / "totals.json").write_text(json.dumps({"seed": seed, **verdict.totals()}, indent=2))
    return SoakResult(verdict=verdict, runs=runs, events=driver.events, worker_logs=logs)


async def _drive(
    driver: _Driver,
    driver_app: tuple[Pyncette, Mapping[str, Task]],
    duration: float,
    workers: int,
    kill_every: float,
    cut_every: float,
    steady: int,
) -> dict[int, str]:
    """The driver's loop; returns the workers' logs once they stopped, also when the loop failed."""
    async with driver.fleet.running():
        try:
            await _churn(driver, driver_app, duration, workers, kill_every, cut_every, steady)
        finally:
            with anyio.CancelScope(shield=True):
                logs = await driver.stop_workers()
    return logs


async def _churn(
    driver: _Driver,
    driver_app: tuple[Pyncette, Mapping[str, Task]],
    duration: float,
    workers: int,
    kill_every: float,
    cut_every: float,
    steady: int,
) -> None:
    began = time.monotonic()
    app, templates = driver_app
    async with app.create() as context:
        for _ in range(steady):
            for mode in (AT_LEAST_ONCE, AT_MOST_ONCE):
                instance = driver.new_instance(once=False, steady=True, mode=mode)
                if await driver._call_schedule(context, templates, instance, changed=True):
                    driver.instances[instance.name] = instance
        for _ in range(workers):
            await driver.start_worker()
        await wait_until(
            lambda: any(r.instance == STATIC_ALO and r.end is not None for r in read_ledger(driver.fleet.ledger)),
            timeout=60,
            what="the first worker to run the static task",
        )
        driver.events.append(DriverEvent(op="static", at=time.time(), instance=STATIC_ALO, mode=AT_LEAST_ONCE, every=1))
        active_until = began + max(duration - GRACE, 0)
        next_kill = time.monotonic() + kill_every
        next_cut = time.monotonic() + cut_every / 2
        while time.monotonic() < active_until:
            await driver.step(context, templates)
            now = time.monotonic()
            if now >= next_kill:
                await driver.kill_one()
                await driver.start_worker()
                next_kill = now + driver.rng.uniform(0.5, 1.5) * kill_every
            if driver.fleet.can_cut and now >= next_cut:
                await driver.cut()
                next_cut = now + driver.rng.uniform(0.5, 1.5) * cut_every
            await anyio.sleep(driver.rng.uniform(0.05, 0.4))
        quiet_until = began + duration
        while time.monotonic() < quiet_until:
            await anyio.sleep(min(1.0, max(quiet_until - time.monotonic(), 0)))


async def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` without blocking the event loop; fail with ``what`` after ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(interval)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
