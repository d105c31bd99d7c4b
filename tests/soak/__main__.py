"""The long soak: ``python -m tests.soak --backend sqlite --minutes 10``; prints the ledger totals as JSON.

Uses the stores of ``tests/multiprocess/conftest.py`` (a fresh table or namespace, dropped
afterwards; DynamoDB on a private moto server). Exits 1 when the checker found a violation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.multiprocess.conftest import STORES
from tests.soak.driver import run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--backend", choices=sorted(STORES), required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--keep", type=Path, default=None, help="directory for the ledger and driver log (default: a temporary one)"
    )
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyncette-soak-") as scratch:
        workdir = arguments.keep or Path(scratch)
        patch = pytest.MonkeyPatch()
        stores = STORES[arguments.backend](workdir, patch)
        store = next(stores)
        try:
            result = run_soak(
                store.backend,
                store.options,
                workdir / "soak",
                duration=arguments.minutes * 60,
                address=store.address,
                via_proxy=store.via_proxy,
                environment=store.environment,
                workers=arguments.workers,
                seed=arguments.seed,
            )
        finally:
            for _ in stores:
                pass
            patch.undo()
        totals = {"backend": arguments.backend, "minutes": arguments.minutes, **result.totals()}
        print(json.dumps(totals))
        for violation in result.verdict.violations[:50]:
            print(f"VIOLATION {violation.kind} {violation.instance}: {violation.detail}", file=sys.stderr)
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
