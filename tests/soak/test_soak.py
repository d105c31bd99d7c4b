"""A short soak per backend: workers killed and connections cut while instances churn; the ledger judged.

The shared stores run worker processes (``PYNCETTE_SOAK_SECONDS``, default 45, per backend); the
memory backend runs its workers in this process (:mod:`tests.soak.in_process`; default 30 s, as
it needs no process start-up). The long run is ``python -m tests.soak --backend <name> --minutes
10`` (see docs/guarantees.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.multiprocess.conftest import Store
from tests.soak.driver import SoakResult, run_soak
from tests.soak.in_process import run_memory_soak

pytestmark = pytest.mark.slow

SECONDS = os.environ.get("PYNCETTE_SOAK_SECONDS")


@pytest.mark.multiprocess
def test_soak_ledger_has_no_violations(store: Store, tmp_path: Path) -> None:
    result = run_soak(
        store.backend,
        store.options,
        tmp_path / "soak",
        duration=float(SECONDS or 45),
        address=store.address,
        via_proxy=store.via_proxy,
        environment=store.environment,
    )
    assert_soak_passed(store.backend, result, cuts=store.via_proxy is not None)


def test_memory_soak_ledger_has_no_violations(tmp_path: Path) -> None:
    result = run_memory_soak(tmp_path / "soak", duration=float(SECONDS or 30))
    assert_soak_passed("memory", result, cuts=True)


def assert_soak_passed(backend: str, result: SoakResult, *, cuts: bool) -> None:
    """No violation, enough faults and enough judged slots per mode, no internal error in any worker's log."""
    totals = result.totals()
    print(f"soak {backend}: {totals}")
    assert result.verdict.ok, [str(v) for v in result.verdict.violations[:20]]
    assert result.verdict.kills >= 2 and result.verdict.workers_started >= 5, totals
    if cuts:
        assert result.verdict.cuts >= 2, totals
    assert result.verdict.expected_slots >= 50, "the run judged enough due slots"
    assert result.verdict.by_mode.get("at_most_once", 0) >= 30 and result.verdict.by_mode.get("at_least_once", 0) >= 30, totals
    internal = [worker for worker, log in result.worker_logs.items() if "internal error" in log]
    assert not internal, {worker: result.worker_logs[worker][-2000:] for worker in internal}
