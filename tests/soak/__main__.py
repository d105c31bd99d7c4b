"""The long soak: ``python -m tests.soak --backend sqlite --minutes 10``; prints the ledger totals as JSON.

Shared stores use the stores of ``tests/multiprocess/conftest.py`` (a fresh table or namespace,
dropped afterwards; DynamoDB on a private moto server) with worker processes; ``--backend memory``
runs its workers in this process (:mod:`tests.soak.in_process`). Exits 1 when the checker found a
violation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.multiprocess.conftest import STORES
from tests.soak.driver import SoakResult, run_soak
from tests.soak.in_process import run_memory_soak

MEMORY = "memory"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--backend", choices=sorted([*STORES, MEMORY]), required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--max-live", type=int, default=None, help="bound on the changing recurring instances (for a slow store such as moto)"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="directory for the ledger and driver log (default: a temporary one)"
    )
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyncette-soak-") as scratch:
        workdir = arguments.keep or Path(scratch)
        duration = arguments.minutes * 60
        if arguments.backend == MEMORY:
            result = run_memory_soak(workdir / "soak", duration=duration, workers=arguments.workers, seed=arguments.seed)
        else:
            result = _soak_shared_store(
                arguments.backend, workdir, duration, arguments.workers, arguments.seed, arguments.max_live
            )
        totals = {"backend": arguments.backend, "minutes": arguments.minutes, **result.totals()}
        print(json.dumps(totals))
        for violation in result.verdict.violations[:50]:
            print(f"VIOLATION {violation.kind} {violation.instance}: {violation.detail}", file=sys.stderr)
    return 0 if result.verdict.ok else 1


def _soak_shared_store(
    backend: str, workdir: Path, duration: float, workers: int, seed: int | None, max_live: int | None
) -> SoakResult:
    patch = pytest.MonkeyPatch()
    stores = STORES[backend](workdir, patch)
    store = next(stores)
    try:
        return run_soak(
            store.backend,
            store.options,
            workdir / "soak",
            duration=duration,
            address=store.address,
            via_proxy=store.via_proxy,
            environment=store.environment,
            workers=workers,
            seed=seed,
            max_live=max_live,
        )
    finally:
        for _ in stores:
            pass
        patch.undo()


if __name__ == "__main__":
    sys.exit(main())
