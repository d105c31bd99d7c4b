"""memory: a worker's resident memory while 1M instances (100k with ``--quick``) are stored, after a drain.

The store gets the stored instances (due in a year, so never run) plus 5,000 due ones; one worker
drains the due ones (as in ``drain``) and reports its resident set size (VmRSS) and its peak
(VmHWM) when it stops. pyncette 1.1.0's store fills one instance at a time, so its stored count is
capped by ``--v1-max-stored`` and the record says how many it had.
"""

from __future__ import annotations

import argparse
from typing import Any

import drain
from backends import Services
from common import ProgramFailed, compare, emit, failed

DUE = 5000


def main(args: argparse.Namespace, services: Services) -> None:
    stored = 100_000 if args.quick else 1_000_000
    measured: dict[str, dict[str, Any]] = {}
    for impl in args.impls:
        future = stored if impl == "ours" else min(stored, args.v1_max_stored)
        try:
            record = drain.run(impl, args.backend, services, count=DUE, processes=1, future=future)
        except ProgramFailed as error:
            failed("memory", impl, args.backend, error)
            continue
        measured[impl] = {"rss_kib": record["rss_kib"][0], "peak_rss_kib": record["peak_rss_kib"][0]}
        emit({**record, "bench": "memory", **measured[impl]})
    compare("memory", args.backend, measured, lower=["rss_kib", "peak_rss_kib"])
