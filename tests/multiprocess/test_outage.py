"""A sustained store outage, per networked backend: a worker process behind a TCP proxy that goes down.

One worker runs with a short ``poll_backoff_max`` and ``store_timeout`` so that a few seconds of
outage show the whole behaviour. While the proxy is down the worker backs off (bounded, jittered),
reports unready but stays alive, and keeps running the task that held its lease; when the proxy is
up again the worker becomes ready, commits that task and runs the work that came due meanwhile,
without a restart. Executions are counted from the workers' ledger, knocks on the store from the
proxy, back-off pauses from the worker's JSON log.
"""

from __future__ import annotations

import datetime
import itertools
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.multiprocess.conftest import Store
from tests.ops.conftest import free_port
from tests.support.multiprocess import WorkerPool, wait_for
from tests.support.tcp_proxy import OutageMode, TcpProxy

pytestmark = pytest.mark.multiprocess

POLL_INTERVAL = 0.05
BACKOFF_MAX = 2.0
STORE_TIMEOUT = 1.0
MAX_POLL_AGE = 2.5
OUTAGE = 7.0
DUE = 30
SLOW = "slow000000"


def probe(port: int, path: str) -> int:
    """The HTTP status of ``path`` on the worker's health server; 0 while it does not listen."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except urllib.error.URLError:
        return 0


def log_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


# Each fault runs under one execution mode: a refused store under AT_MOST_ONCE (commit before the
# run, so nothing may run twice), a silent one under AT_LEAST_ONCE (heartbeats and a commit after).
@pytest.mark.parametrize(("fault", "mode"), [("refuse", "at_most_once"), ("blackhole", "at_least_once")])
def test_a_worker_rides_out_a_store_outage(networked_store: Store, tmp_path: Path, fault: OutageMode, mode: str) -> None:
    store = networked_store
    assert store.address is not None and store.via_proxy is not None
    health = free_port()
    at_least_once = mode == "at_least_once"
    with TcpProxy(*store.address) as proxy:
        pool = WorkerPool(
            store.backend,
            store.via_proxy(proxy.port),
            tmp_path / "ledger",
            mode=mode,
            lease=60,
            heartbeat=1.0 if at_least_once else None,
            poll_interval=POLL_INTERVAL,
            environment={**store.environment, "PYNCETTE_LOG_FORMAT": "json"},
            extra={
                "poll_backoff_max": BACKOFF_MAX,
                "store_timeout": STORE_TIMEOUT,
                "health_port": health,
                "max_poll_age": MAX_POLL_AGE,
            },
        )
        with pool as workers:
            (worker,) = workers.start(1)
            wait_for(lambda: probe(health, "/readyz") == 200, timeout=60, what="the worker to become ready")
            workers.seed(1, prefix="slow", sleep=OUTAGE + 3)
            wait_for(lambda: workers.started()[SLOW] == 1, timeout=30, what="the slow task to start")
            due_at = time.time() + 3
            names = workers.seed(DUE, prefix="due", execute_at=_utc(due_at))

            proxy.down(fault)
            down_at, down_wall = time.monotonic(), time.time()
            assert due_at > down_wall, "the seeded work comes due during the outage"
            wait_for(
                lambda: probe(health, "/readyz") == 503,
                timeout=MAX_POLL_AGE + STORE_TIMEOUT + 5,
                what="readiness to fail during the outage",
            )
            unready = 0
            while time.monotonic() < down_at + OUTAGE:
                # The outage lasts OUTAGE seconds whatever happens; probe through it.
                assert probe(health, "/readyz") == 503, "ready while the store is unreachable"
                assert probe(health, "/livez") == 200, "not alive while the store is unreachable"
                unready += 1
                time.sleep(0.25)
            assert workers.finished()[SLOW] == 0, "the slow task outlives the outage"
            assert not any(workers.started()[name] for name in names), "nothing was claimed while the store was down"
            proxy.up()
            up_at, up_wall = time.monotonic(), time.time()

            wait_for(
                lambda: probe(health, "/readyz") == 200,
                timeout=BACKOFF_MAX + STORE_TIMEOUT + 10,
                what="readiness after the outage",
            )
            wait_for(lambda: len(workers.finished()) >= DUE + 1, timeout=60, what="the slow task and every due instance")
            wait_for(lambda: not workers.remaining(), timeout=30, what="every instance committed")
            assert worker.poll() is None, "the worker resumed without a restart"
            logs = workers.stop()

    assert unready > 0
    (log,) = logs.values()
    records = log_records(log)
    finished, started = workers.finished(), workers.started()
    entries = {(e.event, e.instance): e for e in workers.entries()}

    # The task that held its lease ran on through the outage, to its end, once.
    assert started[SLOW] == finished[SLOW] == 1
    assert entries[("start", SLOW)].at < down_wall and entries[("end", SLOW)].at > up_wall
    assert not [r for r in records if "lost its lease" in r["message"] or "could not commit" in r["message"]]
    if at_least_once:
        # Its heartbeats failed and were logged; its commit after the outage applied (the once-off
        # instance is gone from the store, checked by ``remaining`` above).
        assert [r for r in records if SLOW in r["message"] and "lease extension failed" in r["message"]]

    # Work due during the outage ran after it, all of it, and under AT_MOST_ONCE once each.
    assert set(names) <= set(finished)
    assert min(entries[("start", name)].at for name in names) >= up_wall
    if not at_least_once:
        assert max(finished.values()) == 1, "an AT_MOST_ONCE instance ran twice"

    # The loop backed off: every pause is the exponential step jittered to [50%, 100%], capped.
    pauses = [r for r in records if "retry_in" in r]
    assert len(pauses) >= OUTAGE / (BACKOFF_MAX + STORE_TIMEOUT)
    ratios = []
    for record in pauses:
        step = min(POLL_INTERVAL * 2 ** min(record["failures"], 10), BACKOFF_MAX)
        assert 0.5 * step - 1e-6 <= record["retry_in"] <= step + 1e-6, record
        ratios.append(record["retry_in"] / step)
    assert max(ratios) - min(ratios) > 0.01, f"the pauses are not jittered: {ratios}"

    # The proxy saw the clients knock throughout the outage, but far less often than once per
    # poll interval once the back-off had grown.
    knocks = proxy.knocks(down_at, up_at)
    edges = [down_at, *knocks, up_at]
    gaps = [b - a for a, b in itertools.pairwise(edges)]
    assert max(gaps) <= BACKOFF_MAX + STORE_TIMEOUT + 1.0, f"a silent stretch of {max(gaps):.1f}s: {gaps}"
    late = [t for t in knocks if t >= down_at + OUTAGE / 2]
    per_poll_interval = (OUTAGE / 2) / POLL_INTERVAL
    assert len(late) <= per_poll_interval / 3, f"{len(late)} knocks in the last {OUTAGE / 2}s: {knocks}"


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
