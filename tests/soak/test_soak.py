"""A short soak per backend: workers killed and connections cut while instances churn; the ledger judged.

The run lasts ``PYNCETTE_SOAK_SECONDS`` (default 45) per backend. The long run is
``python -m tests.soak --backend <name> --minutes 10`` (see docs/guarantees.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.multiprocess.conftest import Store
from tests.soak.driver import run_soak

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

SECONDS = float(os.environ.get("PYNCETTE_SOAK_SECONDS", "45"))


def test_soak_ledger_has_no_violations(store: Store, tmp_path: Path) -> None:
    result = run_soak(
        store.backend,
        store.options,
        tmp_path / "soak",
        duration=SECONDS,
        address=store.address,
        via_proxy=store.via_proxy,
        environment=store.environment,
    )
    totals = result.totals()
    print(f"soak {store.backend}: {totals}")
    assert result.verdict.ok, [str(v) for v in result.verdict.violations[:20]]
    assert result.verdict.kills >= 2 and result.verdict.workers_started >= 5, totals
    if store.via_proxy is not None:
        assert result.verdict.cuts >= 2, totals
    assert result.verdict.expected_slots >= 50, "the run judged enough due slots"
    assert result.verdict.by_mode.get("at_most_once", 0) >= 30 and result.verdict.by_mode.get("at_least_once", 0) >= 30, totals
    internal = [pid for pid, log in result.worker_logs.items() if "internal error" in log]
    assert not internal, {pid: result.worker_logs[pid][-2000:] for pid in internal}
