"""schedule: instances scheduled per second, ``schedule_task`` one by one and (ours) ``schedule_tasks`` in bulk.

One ``worker.py schedule`` process per implementation against a fresh store: it awaits
``--count`` ``schedule_task`` calls one after another, then (where bulk scheduling exists)
registers ``--bulk-count`` instances with ``schedule_tasks`` in chunks of 1000. All instances are
due in a year, so nothing runs. The comparison gives the one-by-one rates and the bulk rate of ours
against the one-by-one rate of 1.1.0 (the target is 10x).
"""

from __future__ import annotations

import argparse
from typing import Any

from backends import Services, store
from common import ProgramFailed, compare, emit, failed, worker


def main(args: argparse.Namespace, services: Services) -> None:
    count, bulk_count = (500, 5000) if args.quick else (2000, 50_000)
    measured: dict[str, dict[str, Any]] = {}
    for impl in args.impls:
        try:
            with store(args.backend, services, f"schedule_{impl}") as spec:
                records = worker(impl, "schedule", spec, count=count, bulk_count=bulk_count)
        except ProgramFailed as error:
            failed("schedule", impl, args.backend, error)
            continue
        measured[impl] = {}
        for record in records:
            rate = round(record["count"] / record["seconds"], 1)
            details = {key: value for key, value in record.items() if key != "mode"}
            emit({"bench": "schedule", "impl": impl, "backend": args.backend, **details, "per_s": rate})
            measured[impl][f"{record['method']}_per_s"] = rate
    compare("schedule", args.backend, measured, higher=["one_by_one_per_s"])
    if "ours" in measured and "v1" in measured:
        bulk = {"ours": {"per_s": measured["ours"].get("bulk_per_s")}, "v1": {"per_s": measured["v1"]["one_by_one_per_s"]}}
        compare("schedule", args.backend, bulk, higher=["per_s"], method="ours bulk vs 1.1.0 one by one")
