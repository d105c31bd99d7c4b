"""The cost of one poll of a dynamic task's instances as the number stored grows; runs under both versions.

A poll is the store query a worker makes every poll interval for each dynamic task. Ours: one
``Repository.claim_due`` (lock-and-fetch of up to 100 due instances). pyncette 1.1.0: one
``Repository.poll_dynamic_task``, its closest path (it returns the due instances; claiming each one
is a further ``poll_task`` per instance, not timed here). The version is detected by feature, not
by number. The store is filled in steps (``--sizes``) with instances due in a year; at each size
the probe times ``--repeat`` polls with nothing due, then polls with ``--due`` instances due.
Prints one JSON object per size.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import statistics
import time
from typing import Any, Awaitable, Callable

import pyncette.repository
from pyncette import Context, ExecutionMode, Pyncette

UTC = datetime.timezone.utc
TASK = "bench_dynamic"
LEASE = datetime.timedelta(seconds=60)
CHUNK = 1000
CONCURRENCY = 16


def year_ahead() -> datetime.datetime:
    return datetime.datetime.now(UTC) + datetime.timedelta(days=365)


class OursProbe:
    """Through ``register_tasks`` and ``claim_due`` of this repository's Repository contract."""

    def __init__(self, repository: Any) -> None:
        from pyncette.model import Completion, Registration, TaskKey

        self.repository, self.key, self.registration, self.completion = repository, TaskKey, Registration, Completion

    async def add(self, names: list[str], next_run: datetime.datetime) -> None:
        now = datetime.datetime.now(UTC)
        for start in range(0, len(names), CHUNK):
            registrations = [
                self.registration(key=self.key(task=TASK, instance=name), spec="{}", data="{}", next_run=next_run)
                for name in names[start : start + CHUNK]
            ]
            await self.repository.register_tasks(now, registrations)

    async def poll(self) -> list[Any]:
        now = datetime.datetime.now(UTC)
        result = await self.repository.claim_due(now, TASK, owner="probe", lease_duration=LEASE, limit=100)
        return list(result.claimed)

    async def release(self, claimed: list[Any]) -> None:
        due = datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)
        completions = [self.completion(key=c.state.key, lease=c.lease, next_run=due, data="{}") for c in claimed]
        await self.repository.complete_tasks(datetime.datetime.now(UTC), completions)

    async def remove(self, names: list[str]) -> None:
        for name in names:
            await self.repository.unregister_task(datetime.datetime.now(UTC), self.key(task=TASK, instance=name))


class V1Probe:
    """Through pyncette 1.1.0's ``register_task``, ``poll_dynamic_task`` and ``unlock_task``."""

    def __init__(self, repository: Any, task: Any) -> None:
        self.repository, self.task = repository, task

    async def add(self, names: list[str], next_run: datetime.datetime) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(name: str) -> None:
            async with limit:
                await self.repository.register_task(datetime.datetime.now(UTC), self.task.instantiate(name, execute_at=next_run))

        await asyncio.gather(*(one(name) for name in names))

    async def poll(self) -> list[Any]:
        response = await self.repository.poll_dynamic_task(datetime.datetime.now(UTC), self.task)
        return list(response.tasks)

    async def release(self, claimed: list[Any]) -> None:
        for instance, lease in claimed:
            if lease is not None:
                await self.repository.unlock_task(datetime.datetime.now(UTC), instance, lease)

    async def remove(self, names: list[str]) -> None:
        for name in names:
            await self.repository.unregister_task(
                datetime.datetime.now(UTC), self.task.instantiate(name, execute_at=year_ahead())
            )


async def timed(
    repeat: int, poll: Callable[[], Awaitable[list[Any]]], after: Callable[[list[Any]], Awaitable[None]]
) -> dict[str, Any]:
    durations, claimed = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = await poll()
        durations.append(time.perf_counter() - started)
        claimed = len(result)
        await after(result)
    return {
        "median_ms": round(statistics.median(durations) * 1000, 3),
        "min_ms": round(min(durations) * 1000, 3),
        "returned": claimed,
    }


async def probe(store: dict[str, Any], args: argparse.Namespace) -> None:
    module_name, _, factory_name = store["factory"].partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    ours = hasattr(pyncette.repository.Repository, "claim_due")
    async with factory(**store["options"]) as repository:
        if ours:
            runner: Any = OursProbe(repository)
        else:
            app = Pyncette(repository_factory=factory, **store["options"])

            async def bench_dynamic(context: Context) -> None:
                pass

            runner = V1Probe(repository, app.dynamic_task(execution_mode=ExecutionMode.AT_LEAST_ONCE)(bench_dynamic))
        stored = 0
        for size in args.sizes:
            started = time.perf_counter()
            await runner.add([f"f{index:07d}" for index in range(stored, size)], year_ahead())
            seeded, stored = time.perf_counter() - started, size
            idle = await timed(args.repeat, runner.poll, runner.release)
            due_names = [f"d{index:07d}" for index in range(args.due)]
            await runner.add(due_names, datetime.datetime.now(UTC) - datetime.timedelta(seconds=1))
            due = await timed(max(args.repeat // 4, 3), runner.poll, runner.release)
            await runner.remove(due_names)
            record = {"mode": "poll", "stored": size, "idle": idle, "due": due, "seed_seconds": round(seeded, 1)}
            print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", required=True, help='JSON: {"factory": "module:function", "options": {...}}')
    parser.add_argument("--sizes", type=lambda text: [int(s) for s in text.split(",")], default=[10_000, 100_000])
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(probe(json.loads(args.store), args))


if __name__ == "__main__":
    main()
