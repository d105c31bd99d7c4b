"""The one benchmark worker program, run unchanged under pyncette 1.1.0 and under this repository.

It imports only the public API both versions share (``Pyncette``, ``Context``, ``ExecutionMode`` and
a backend's ``<name>_repository`` factory, named in ``--store``) and detects bulk scheduling
(``schedule_tasks``, ours only) at run time. Nothing else of either implementation is used, so the
same code measures both. Every mode prints one JSON object per line on stdout.

Modes (first argument):

- ``seed``: schedule ``--count`` once-off instances that are already due, plus ``--future`` ones due
  in a year (untimed set-up for ``drain``, ``memory`` and ``poll``).
- ``drain``: start (with ``--count``/``--future``, seed as ``seed`` does, for a store that lives
  in this process), print ``ready``, wait for ``go`` on stdin, run the scheduler; every execution
  appends its 8-character instance name to ``--ledger``; ``stop`` on stdin shuts down. Prints the
  CPU seconds spent from ``go`` to the last execution, the wall clock of the first and last
  execution, the warnings logged and the resident memory.
- ``lateness``: static tasks every second plus the once-off instances that a ``feed`` process
  schedules; prints every execution's start minus its scheduled instant.
- ``feed``: schedule one once-off instance for "now" every ``--period`` seconds for ``--duration``.
- ``schedule``: time ``schedule_task`` one by one, then ``schedule_tasks`` in bulk where it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import logging
import resource
import sys
import time
from typing import Any, Callable

from pyncette import Context, ExecutionMode, Pyncette

UTC = datetime.timezone.utc
NAME_WIDTH = 8
"""Instance names are ``i`` plus 7 digits, so a ledger line is 9 bytes and its size counts executions."""
SEED_CONCURRENCY = 16
"""Concurrent ``schedule_task`` calls while seeding without bulk scheduling (seeding is not timed)."""
BULK_CHUNK = 1000
DYNAMIC_TASK = "bench_dynamic"


def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


def instance_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:0{NAME_WIDTH - 1}d}"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, from /proc."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


class WarningCounter(logging.Handler):
    """Counts WARNING and worse records (for instance "database is locked") and keeps a few samples."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.samples) < 3:
            self.samples.append(record.getMessage()[:200])


def make_app(store: dict[str, Any], args: argparse.Namespace) -> Pyncette:
    module_name, _, factory_name = store["factory"].partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return Pyncette(
        repository_factory=factory,
        concurrency_limit=args.concurrency,
        poll_interval=datetime.timedelta(seconds=args.poll_interval),
        **store["options"],
    )


def named(func: Callable[[Context], Any], name: str) -> Callable[[Context], Any]:
    """Name a task through its function: 1.1.0's decorators take the name from ``__name__`` only."""
    func.__name__ = func.__qualname__ = name
    return func


def dynamic(app: Pyncette, func: Callable[[Context], Any]) -> Any:
    """The benchmark's one dynamic task, under the same name in every mode and process."""
    return app.dynamic_task(execution_mode=ExecutionMode.AT_LEAST_ONCE)(named(func, DYNAMIC_TASK))


async def schedule_many(ctx: Any, task: Any, names: list[str], at: datetime.datetime, *, bulk: bool) -> None:
    """Schedule once-off instances at ``at``: bulk when asked and available, else concurrently one by one."""
    if bulk and hasattr(ctx, "schedule_tasks"):
        for start in range(0, len(names), BULK_CHUNK):
            await ctx.schedule_tasks([(task, name, {"execute_at": at}) for name in names[start : start + BULK_CHUNK]])
        return
    limit = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(name: str) -> None:
        async with limit:
            await ctx.schedule_task(task, name, execute_at=at)

    await asyncio.gather(*(one(name) for name in names))


async def fill(ctx: Any, task: Any, args: argparse.Namespace) -> float:
    """Schedule ``--future`` instances due in a year and ``--count`` already due; return the seconds taken."""
    started = time.perf_counter()
    now = datetime.datetime.now(UTC)
    future = [instance_name("f", i) for i in range(args.future)]
    await schedule_many(ctx, task, future, now + datetime.timedelta(days=365), bulk=True)
    due = [instance_name("i", i) for i in range(args.count)]
    await schedule_many(ctx, task, due, now - datetime.timedelta(seconds=1), bulk=True)
    return time.perf_counter() - started


async def seed(store: dict[str, Any], args: argparse.Namespace) -> None:
    app = make_app(store, args)

    async def noop(context: Context) -> None:
        pass

    task = dynamic(app, noop)
    async with app.create() as ctx:
        seconds = await fill(ctx, task, args)
    emit(mode="seed", count=args.count, future=args.future, seconds=seconds)


class Ledger:
    """Executed instance names, flushed to a file every few milliseconds so the orchestrator can count."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a")  # noqa: SIM115 - closed by close()
        self.pending: list[str] = []
        self.first = 0.0
        self.last = 0.0
        self.cpu_at_last = 0.0

    def add(self, name: str) -> None:
        now = time.time()
        if not self.first:
            self.first = now
        self.last = now
        self.pending.append(name)

    def flush(self) -> None:
        if self.pending:
            self.file.write("\n".join(self.pending) + "\n")
            self.file.flush()
            self.pending.clear()
            self.cpu_at_last = cpu_seconds()

    async def run(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


async def stdin_reader() -> asyncio.StreamReader:
    """Commands from the orchestrator, read on the event loop (a reader thread would show in profiles)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def drain(store: dict[str, Any], args: argparse.Namespace) -> None:
    counter = WarningCounter()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.WARNING)
    app = make_app(store, args)
    ledger = Ledger(args.ledger)

    async def record(context: Context) -> None:
        ledger.add(context.task.name)

    task = dynamic(app, record)
    commands = await stdin_reader()
    async with app.create() as ctx:
        # A store that lives in this process (the memory backend) is filled here, before "ready".
        seeded = await fill(ctx, task, args) if args.count or args.future else None
        emit(mode="ready", seconds=seeded)
        await commands.readline()
        go, cpu_at_go = time.time(), cpu_seconds()
        flusher = asyncio.ensure_future(ledger.run(0.02))
        runner = asyncio.ensure_future(ctx.run())
        await commands.readline()
        ctx.shutdown()
        await runner
        flusher.cancel()
    ledger.close()
    emit(
        mode="drain",
        go=go,
        first=ledger.first,
        last=ledger.last,
        cpu=max(ledger.cpu_at_last - cpu_at_go, 0.0),
        cpu_total=cpu_seconds(),
        warnings=counter.count,
        warning_samples=counter.samples,
        **memory_kib(),
    )


async def lateness(store: dict[str, Any], args: argparse.Namespace) -> None:
    app = make_app(store, args)
    samples: dict[str, list[float]] = {"static": [], "once": []}

    def recorder(kind: str) -> Callable[[Context], Any]:
        async def run(context: Context) -> None:
            samples[kind].append(time.time() - context.scheduled_at.timestamp())

        return run

    for index in range(args.static):
        app.task(schedule="* * * * * *")(named(recorder("static"), f"static{index}"))
    dynamic(app, recorder("once"))
    async with app.create() as ctx:
        runner = asyncio.ensure_future(ctx.run())
        await asyncio.sleep(args.duration)
        ctx.shutdown()
        await runner
    emit(mode="lateness", samples=samples)


async def feed(store: dict[str, Any], args: argparse.Namespace) -> None:
    app = make_app(store, args)

    async def noop(context: Context) -> None:
        pass

    task = dynamic(app, noop)
    count = 0
    async with app.create() as ctx:
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            await ctx.schedule_task(task, instance_name("n", count), execute_at=datetime.datetime.now(UTC))
            count += 1
            await asyncio.sleep(args.period)
    emit(mode="feed", count=count)


async def schedule(store: dict[str, Any], args: argparse.Namespace) -> None:
    app = make_app(store, args)

    async def noop(context: Context) -> None:
        pass

    task = dynamic(app, noop)
    at = datetime.datetime.now(UTC) + datetime.timedelta(days=365)
    async with app.create() as ctx:
        started = time.perf_counter()
        for index in range(args.count):
            await ctx.schedule_task(task, instance_name("s", index), execute_at=at)
        emit(mode="schedule", method="one_by_one", count=args.count, seconds=time.perf_counter() - started)
        if args.bulk_count and hasattr(ctx, "schedule_tasks"):
            names = [instance_name("b", index) for index in range(args.bulk_count)]
            started = time.perf_counter()
            await schedule_many(ctx, task, names, at, bulk=True)
            emit(mode="schedule", method="bulk", count=args.bulk_count, seconds=time.perf_counter() - started)


MODES = {"seed": seed, "drain": drain, "lateness": lateness, "feed": feed, "schedule": schedule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--store", required=True, help='JSON: {"factory": "module:function", "options": {...}}')
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--bulk-count", type=int, default=0)
    parser.add_argument("--future", type=int, default=0)
    parser.add_argument("--ledger", default="")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--static", type=int, default=5)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(MODES[args.mode](json.loads(args.store), args))


if __name__ == "__main__":
    main()
