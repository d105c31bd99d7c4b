"""drain: throughput of N due once-off dynamic instances executed by P worker processes.

Seeding (not timed) schedules N instances that are already due. Then P ``worker.py drain``
processes start, connect and report ready; all get ``go`` at once. Every execution appends its
instance name to the worker's ledger file, whose size the orchestrator watches until N distinct
executions are in (or progress stalls). Measured: wall time from ``go`` to the last execution,
executions per second, CPU milliseconds per execution (the workers' user + system CPU from ``go`` to
their last execution, summed, over executions), duplicates (executions beyond one per instance),
misses (instances never executed), warnings logged (for instance "database is locked") and the
workers' resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from backends import IN_PROCESS, Services, store
from common import ProgramFailed, compare, emit, environment, failed, flags, for_impl, log, program, worker
from worker import NAME_WIDTH

STALL_SECONDS = 60.0
"""Give up when no execution arrived for this long (a stuck or crashed implementation)."""


def main(args: argparse.Namespace, services: Services) -> None:
    """Every implementation with every process count; one record each, then the comparison."""
    count = args.instances or (5000 if args.quick else 20000)
    for processes in args.process_counts:
        measured = {}
        for impl in args.impls:
            try:
                measured[impl] = run(impl, args.backend, services, count=count, processes=processes, profile=args.profile)
            except ProgramFailed as error:
                failed("drain", impl, args.backend, error)
                continue
            emit(measured[impl])
        compare("drain", args.backend, measured, higher=["executions_per_s"], lower=["cpu_ms_per_execution"], processes=processes)


def run(
    impl: str, backend: str, services: Services, *, count: int, processes: int, future: int = 0, profile: str | None = None
) -> dict[str, Any]:
    """Seed, drain with ``processes`` workers and return one record.

    With ``profile`` (a folder), each worker runs under ``py-spy record`` and leaves its sampled
    stacks (collapsed format, CPU only) in ``<profile>/drain-<impl>-<backend>-P<processes>-<i>.txt``.
    """
    in_process = backend in IN_PROCESS
    if in_process and processes > 1:
        raise ProgramFailed(f"the {backend} backend lives in one process: P = 1 only")
    with store(backend, services, f"drain_{impl}") as shared:
        spec = for_impl(shared, impl)
        seeding = {"count": count, "future": future}
        if not in_process:
            (seeded,) = worker(impl, "seed", spec, **seeding)
        with tempfile.TemporaryDirectory(prefix="pyncette-bench-ledger-") as folder:
            prefix = profile and str(Path(profile) / f"drain-{impl}-{backend}-P{processes}")
            options = seeding if in_process else {}
            ready, results = drive(impl, spec, Path(folder), count=count, processes=processes, profile=prefix, seeding=options)
            names = [line for index in range(processes) for line in (Path(folder) / f"{index}.ledger").read_text().split()]
    if in_process:
        seeded = ready[0]
    log(f"drain {impl} {backend} P={processes}: seeded {count} (+{future} future) in {seeded['seconds']:.1f}s")
    executed = len(set(names))
    wall = max(r["last"] for r in results) - min(r["go"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    return {
        "bench": "drain",
        "impl": impl,
        "backend": backend,
        "processes": processes,
        "instances": count,
        "stored_future": future,
        "executed": executed,
        "duplicates": len(names) - executed,
        "misses": count - executed,
        "seconds": round(wall, 3),
        "executions_per_s": round(executed / wall, 1) if wall > 0 else None,
        "cpu_ms_per_execution": round(cpu * 1000 / max(len(names), 1), 4),
        "warnings": sum(r["warnings"] for r in results),
        "warning_samples": [s for r in results for s in r["warning_samples"]][:3],
        "rss_kib": [r.get("VmRSS") for r in results],
        "peak_rss_kib": [r.get("VmHWM") for r in results],
        "seed_seconds": round(seeded["seconds"], 2),
    }


def drive(
    impl: str,
    spec: dict[str, Any],
    folder: Path,
    *,
    count: int,
    processes: int,
    profile: str | None,
    seeding: dict[str, int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Start the workers, release them together, wait for the ledgers to fill, stop them.

    Returns the workers' ``ready`` and ``drain`` records. ``seeding`` (``count``, ``future``) makes
    the worker fill the store itself before it is ready, for stores that live in its process.
    """
    workers = []
    for index in range(processes):
        args = flags(store=spec, ledger=folder / f"{index}.ledger", **seeding)
        command = program("worker.py", impl, ["drain", *args])
        if profile:
            output = f"{profile}-{index}.txt"
            command = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-f",
                "raw",
                "-r",
                "200",
                "-o",
                output,
                "--",
                *command,
            ]
        stderr = open(folder / f"{index}.stderr", "w")  # noqa: SIM115 - closed with the process below
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment(spec),
        )
        workers.append((process, stderr))
    try:
        ready = [expect(process, "ready", folder) for process, _ in workers]
        for process, _ in workers:
            send(process.stdin, "go")
        wait_for(folder, count, processes)
        for process, _ in workers:
            send(process.stdin, "stop")
            assert process.stdin is not None
            process.stdin.close()
        results = [expect(process, "drain", folder) for process, _ in workers]
        for process, _ in workers:
            process.wait(timeout=60)  # under py-spy, until the profile is written
        return ready, results
    finally:
        for process, stderr in workers:
            if process.poll() is None:
                process.kill()
            process.wait()
            stderr.close()


def send(pipe: IO[str] | None, line: str) -> None:
    assert pipe is not None
    pipe.write(line + "\n")
    pipe.flush()


def expect(process: subprocess.Popen[str], mode: str, folder: Path) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    while line and not line.startswith("{"):  # py-spy's own messages, when profiling
        line = process.stdout.readline()
    if not line:
        errors = "\n".join(path.read_text()[-3000:] for path in folder.glob("*.stderr"))
        raise ProgramFailed(f"a drain worker exited before reporting {mode!r}:\n{errors}")
    record: dict[str, Any] = json.loads(line)
    assert record["mode"] == mode, record
    return record


def wait_for(folder: Path, count: int, processes: int) -> None:
    """Return once the ledgers hold ``count`` lines, or when progress stalled."""
    done, last_progress, last_change = 0, 0, time.monotonic()
    ledgers = [folder / f"{index}.ledger" for index in range(processes)]
    while done < count:
        time.sleep(0.05)
        done = sum(path.stat().st_size for path in ledgers if path.exists()) // (NAME_WIDTH + 1)
        if done != last_progress:
            last_progress, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            log(f"no progress for {STALL_SECONDS:.0f}s at {done}/{count} executions; stopping")
            return
