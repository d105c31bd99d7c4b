"""poll: the time of one idle poll, and of one poll with 100 due, at 10k, 100k and 1M stored instances.

Runs ``pollprobe.py`` under each implementation against a fresh store that it fills step by step
(1M is left out with ``--quick``). pyncette 1.1.0 has no bulk registration, so its store fills one
instance at a time (16 concurrent calls); ``--v1-max-stored`` caps its sizes to bound that time,
and the record says so. The comparison line gives, per size, the median poll times and the ratio
1.1.0 / ours (above 1: ours polls faster), plus the growth of each from the smallest size.
"""

from __future__ import annotations

import argparse
from typing import Any

from backends import Services, store
from common import ProgramFailed, compare, emit, failed, flags, for_impl, log, program, run_program

SIZES = (10_000, 100_000, 1_000_000)


def main(args: argparse.Namespace, services: Services) -> None:
    sizes = [size for size in SIZES if not (args.quick and size > 100_000)]
    measured: dict[str, dict[int, dict[str, Any]]] = {}
    for impl in args.impls:
        impl_sizes = [size for size in sizes if impl == "ours" or size <= args.v1_max_stored]
        with store(args.backend, services, f"poll_{impl}") as shared:
            spec = for_impl(shared, impl)
            command = program("pollprobe.py", impl, flags(store=spec, sizes=",".join(map(str, impl_sizes))))
            log(f"poll {impl} {args.backend}: filling to {impl_sizes[-1]} instances")
            try:
                records = run_program(command, spec, timeout=3600)
            except ProgramFailed as error:
                failed("poll", impl, args.backend, error)
                continue
        measured[impl] = {}
        base = records[0]
        for record in records:
            record = {
                "bench": "poll",
                "impl": impl,
                "backend": args.backend,
                **{key: value for key, value in record.items() if key != "mode"},
                "idle_growth": round(record["idle"]["median_ms"] / base["idle"]["median_ms"], 2),
            }
            emit(record)
            measured[impl][record["stored"]] = {
                "idle_ms": record["idle"]["median_ms"],
                "idle_min_ms": record["idle"]["min_ms"],
                "due100_ms": record["due"]["median_ms"],
            }
    for size in sizes:
        if size in measured.get("ours", {}) and "v1" in args.impls:
            # Sizes beyond --v1-max-stored get a line too, with 1.1.0's figures left empty.
            pair = {"ours": measured["ours"][size], "v1": measured.get("v1", {}).get(size, {})}
            compare("poll", args.backend, pair, lower=["idle_ms", "idle_min_ms", "due100_ms"], stored=size)
