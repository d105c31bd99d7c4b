"""lateness: how late tasks start: p50/p99/max of start time minus scheduled instant.

One ``worker.py lateness`` process runs five static tasks due every second (cron with seconds)
and the dynamic task; a second process, ``worker.py feed``, schedules a once-off instance for
"now" five times a second, so that a wake-up must cross processes (push on PostgreSQL and Redis,
the poll interval of 1 s elsewhere). Runs for 30 s (10 s with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from backends import IN_PROCESS, Services, store
from common import ProgramFailed, compare, emit, environment, failed, flags, for_impl, log, program, quantiles, worker

STARTUP_SECONDS = 2.0
"""Let the executing worker start before the feed begins (and stop the feed as long before the end)."""


def main(args: argparse.Namespace, services: Services) -> None:
    duration = 10.0 if args.quick else 30.0
    measured: dict[str, dict[str, Any]] = {}
    for impl in args.impls:
        try:
            samples = run(impl, args.backend, services, duration)
        except ProgramFailed as error:
            failed("lateness", impl, args.backend, error)
            continue
        for kind, values in samples.items():
            record = {"bench": "lateness", "impl": impl, "backend": args.backend, "kind": kind, **quantiles(values)}
            emit(record)
            measured.setdefault(kind, {})[impl] = record
    for kind, pair in measured.items():
        compare("lateness", args.backend, pair, lower=["p50_ms", "p99_ms", "max_ms"], kind=kind)


def run(impl: str, backend: str, services: Services, duration: float) -> dict[str, list[float]]:
    if backend in IN_PROCESS:
        raise ProgramFailed(f"the {backend} backend lives in one process; lateness needs a second one to schedule")
    with store(backend, services, f"lateness_{impl}") as shared:
        spec = for_impl(shared, impl)
        command = program("worker.py", impl, ["lateness", *flags(store=spec, duration=duration)])
        executor = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(spec))
        try:
            time.sleep(STARTUP_SECONDS)
            (fed,) = worker(impl, "feed", spec, duration=duration - 2 * STARTUP_SECONDS, period=0.2)
            out, err = executor.communicate(timeout=duration + 120)
        finally:
            if executor.poll() is None:
                executor.kill()
                executor.wait()
        if executor.returncode != 0:
            raise ProgramFailed(f"lateness worker failed ({executor.returncode}):\n{err[-3000:]}")
    samples: dict[str, list[float]] = json.loads(out.splitlines()[-1])["samples"]
    log(f"lateness {impl} {backend}: {fed['count']} once-off fed, {len(samples['once'])} ran")
    return samples
