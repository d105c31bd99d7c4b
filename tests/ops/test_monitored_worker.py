"""The operations page's walk-through: examples/monitored_worker.py under `pyncette run`, probed over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.ops.conftest import ROOT, free_port, wait_for

pytest.importorskip("prometheus_client")
pytest.importorskip("pyncette.sqlite")


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_the_documented_worker_serves_probes_and_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HEALTH_PORT": str(port),
        "PYNCETTE_SQLITE_DATABASE": str(tmp_path / "worker.db"),
        "PYNCETTE_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "pyncette", "run", "monitored_worker:app", "--app-dir", "examples"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: fetch(base + "/readyz")[0] == 200, what="the worker to be ready")
        status, body = fetch(base + "/livez")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, metrics = fetch(base + "/metrics")
        assert status == 200
        assert 'pyncette_polls_total{task="heartbeat"}' in metrics
        assert 'pyncette_repository_operation_duration_seconds_count{operation="register_tasks"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert fetch(base + "/livez")[0] == 0  # stopped with the app
