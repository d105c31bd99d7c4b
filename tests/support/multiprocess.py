"""Harness for tests that run several worker processes against one real store.

A :class:`WorkerPool` starts workers of :mod:`tests.support.worker_app` with one configuration,
seeds dynamic instances through the same task definition, and reads the ledger the workers write,
so a test counts executions instead of trusting logs. Waiting is always for a condition with a
deadline (:func:`wait_for`), never a bare sleep.

NOTE TO BACKEND AUTHORS: the multi-process and fault tests that every backend needs already live
in ``tests/multiprocess/`` (3 workers x 2,000 instances exactly once under both modes, SIGKILL
re-run after lease expiry, persistence across processes, connections cut through the TCP proxy),
parametrized over every backend by the ``store`` fixture of ``tests/multiprocess/conftest.py``.
Do not copy them per backend: run them with ``pytest tests/multiprocess -k <backend>``, fix your
backend where they fail, and add to ``tests/backends/<name>/`` only what is specific to your store
(for example restarting a private server instance).
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import anyio
import attrs

from tests.support.worker_app import CONFIG_VARIABLE, build_app

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class LedgerEntry:
    event: str
    instance: str
    pid: int
    token: int | None
    at: float


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@attrs.define(eq=False)
class WorkerPool:
    """Worker processes sharing one store configuration and one ledger directory."""

    backend: str
    options: Mapping[str, Any]
    ledger: Path
    mode: str = "at_least_once"
    lease: float = 30
    heartbeat: float | None = None
    poll_interval: float = 0.2
    concurrency_limit: int = 100
    environment: Mapping[str, str] = attrs.field(factory=dict)
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    """More worker configuration (see :mod:`tests.support.worker_app`), e.g. ``health_port``."""
    processes: list[subprocess.Popen[bytes]] = attrs.field(factory=list)
    _logs: list[Path] = attrs.field(factory=list)

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "options": dict(self.options),
            "mode": self.mode,
            "lease": self.lease,
            "heartbeat": self.heartbeat,
            "poll_interval": self.poll_interval,
            "concurrency_limit": self.concurrency_limit,
            "ledger": str(self.ledger),
            **self.extra,
        }

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        env = {**os.environ, **self.environment, CONFIG_VARIABLE: json.dumps(self.config()), "PYTHONPATH": str(ROOT)}
        started = []
        for _ in range(count):
            # stderr goes to a file: a pipe nobody reads would block a worker that logs a lot.
            log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".stderr", dir=self.ledger, delete=False)  # noqa: SIM115
            started.append(subprocess.Popen([sys.executable, "-m", "tests.support.worker_app"], cwd=ROOT, env=env, stderr=log))
            self._logs.append(Path(log.name))
            log.close()
        self.processes.extend(started)
        return started

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL: the worker dies mid-whatever, holding its leases."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> dict[int, str]:
        """SIGTERM every live worker and wait; return each worker's stderr by pid (for diagnostics)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        logs = {}
        for process, log in zip(self.processes, self._logs, strict=True):
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            logs[process.pid] = log.read_text(errors="replace")
        return logs

    def __enter__(self) -> WorkerPool:
        self.ledger.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # the store, from the test process

    def seed(self, count: int, *, prefix: str = "i", execute_at: datetime.datetime | None = None, **args: Any) -> list[str]:
        """Register ``count`` once-off instances due at ``execute_at`` (default: now); return their names."""
        names = [f"{prefix}{index:06d}" for index in range(count)]
        when = execute_at or datetime.datetime.now(datetime.timezone.utc)

        async def register() -> None:
            app, task = self._app()
            async with app.create() as context:
                for start in range(0, count, 500):
                    chunk = names[start : start + 500]
                    await context.schedule_tasks([(task, name, {"execute_at": when, **args}) for name in chunk])

        anyio.run(register)
        return names

    def remaining(self) -> list[str]:
        """Names of the instances still stored (not yet executed and committed)."""

        async def listing() -> list[str]:
            app, task = self._app()
            names: list[str] = []
            async with app.create() as context:
                token = None
                while True:
                    page = await context.list_tasks(task, limit=500, continuation_token=token)
                    names.extend(t.name for t in page.tasks)
                    token = page.continuation_token
                    if token is None:
                        return names

        return anyio.run(listing)

    def _app(self) -> Any:
        probe = self.ledger / "seeder"
        probe.mkdir(exist_ok=True)
        return build_app({**self.config(), "ledger": str(probe), "health_port": None})

    # the ledger

    def entries(self) -> list[LedgerEntry]:
        found = []
        for path in self.ledger.glob("*.log"):
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) != 5:
                    continue  # a line cut short by SIGKILL
                event, instance, pid, token, at = parts
                found.append(LedgerEntry(event, instance, int(pid), None if token == "None" else int(token), float(at)))
        return found

    def finished(self) -> collections.Counter[str]:
        """How many times each instance ran to its end."""
        return collections.Counter(e.instance for e in self.entries() if e.event == "end")

    def started(self) -> collections.Counter[str]:
        return collections.Counter(e.instance for e in self.entries() if e.event == "start")


def by_instance(entries: list[LedgerEntry]) -> Iterator[tuple[str, list[LedgerEntry]]]:
    grouped: dict[str, list[LedgerEntry]] = collections.defaultdict(list)
    for entry in entries:
        grouped[entry.instance].append(entry)
    for instance, group in grouped.items():
        yield instance, sorted(group, key=lambda e: e.at)
