"""Run the benchmarks of one backend against this repository's pyncette, pyncette 1.1.0, or both.

``python benchmarks/run.py --backend sqlite`` runs every workload on both implementations and prints
one JSON line per measurement, then one comparison line per workload with both figures and a ratio
oriented so that above 1 means "ours is better" (ours / 1.1.0 for rates, 1.1.0 / ours for times, CPU
and memory). Progress goes to stderr. See docs/performance.md for the figures and what bounds them.
"""

from __future__ import annotations

import argparse
import sys

import drain
import lateness
import memory
import poll
import schedule
from backends import BACKENDS, IN_PROCESS, Services
from common import IMPLS, python_for

BENCHES = ("drain", "lateness", "poll", "schedule", "memory")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--impl", choices=[*IMPLS, "both"], default="both")
    parser.add_argument("--bench", default=",".join(BENCHES), help=f"comma-separated, from {','.join(BENCHES)}")
    parser.add_argument("--instances", type=int, help="drain: due instances (default 20000; quick 5000)")
    parser.add_argument("--processes", help="drain: worker process counts (default 1,2; 1 for the memory backend)")
    parser.add_argument("--repeat", type=int, default=1, help="run each measurement this many times")
    parser.add_argument("--sqlite-dir", help="folder of the SQLite files (default /dev/shm, a tmpfs)")
    parser.add_argument(
        "--v1-max-stored", type=int, default=100_000, help="poll, memory: cap of 1.1.0's stored instances (filled one by one)"
    )
    parser.add_argument("--profile", help="drain: run the workers under py-spy, stacks into this folder")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs")
    args = parser.parse_args(argv)
    args.benches = [name.strip() for name in args.bench.split(",") if name.strip()]
    unknown = sorted(set(args.benches) - set(BENCHES))
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; expected some of {', '.join(BENCHES)}")
    args.impls = list(IMPLS) if args.impl == "both" else [args.impl]
    default = "1" if args.backend in IN_PROCESS else "1,2"
    args.process_counts = [int(p) for p in (args.processes or default).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for impl in args.impls:
        python_for(impl)
    workloads = {
        "drain": drain.main,
        "lateness": lateness.main,
        "poll": poll.main,
        "schedule": schedule.main,
        "memory": memory.main,
    }
    services = Services(args.backend, sqlite_dir=args.sqlite_dir)
    try:
        for bench in args.benches:
            for _ in range(args.repeat):
                workloads[bench](args, services)
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
