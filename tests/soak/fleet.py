"""The soak's workers: what the driver starts, kills, cuts off from the store and stops.

A :class:`Fleet` hides where the workers run. :class:`ProcessFleet` runs worker processes of
:mod:`tests.support.soak_worker` (killed with SIGKILL, cut through a
:class:`~tests.support.tcp_proxy.TcpProxy`); :class:`tests.soak.in_process.InProcessFleet` runs
them as apps in the driver's event loop over one shared memory store. The driver logs every start,
kill and cut itself (:mod:`tests.soak.driver`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncContextManager, AsyncIterator, Mapping, Protocol

import attrs

from tests.support.multiprocess import ROOT
from tests.support.soak_worker import CONFIG_VARIABLE
from tests.support.tcp_proxy import TcpProxy


class Fleet(Protocol):
    """Workers sharing one store and writing into one ledger directory."""

    ledger: Path
    """Where every worker writes its ledger file."""

    def running(self) -> AsyncContextManager[None]:
        """The span in which workers may be started; it ends after :meth:`stop`."""

    @property
    def can_cut(self) -> bool:
        """Whether :meth:`cut` is supported (a store reached without a network cannot be cut)."""

    async def start_worker(self) -> int:
        """Start a worker; return its number (a pid for processes)."""

    def live(self) -> list[int]:
        """The workers started and not yet dead."""

    async def kill(self, worker: int) -> None:
        """Crash ``worker``: it releases nothing and commits nothing more. Returns once it is dead."""

    async def cut(self) -> float:
        """Disturb every worker's store connection; return when the disturbance ended (Unix time)."""

    async def stop(self) -> dict[int, str]:
        """Ask every live worker to shut down gracefully, wait for all; return each worker's log."""


@attrs.define(eq=False)
class ProcessFleet:
    """Worker processes of :mod:`tests.support.soak_worker` configured by ``config`` (JSON)."""

    ledger: Path
    config: Mapping[str, Any]
    environment: Mapping[str, str]
    proxy: TcpProxy | None = None
    processes: dict[int, subprocess.Popen[bytes]] = attrs.field(factory=dict)
    logs: dict[int, Path] = attrs.field(factory=dict)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield  # the processes run on their own

    @property
    def can_cut(self) -> bool:
        return self.proxy is not None

    async def start_worker(self) -> int:
        config = {**self.config, "ledger": str(self.ledger)}
        env = {**os.environ, **self.environment, CONFIG_VARIABLE: json.dumps(config), "PYTHONPATH": str(ROOT)}
        log = self.ledger.parent / f"worker-{len(self.logs)}.stderr"
        with log.open("wb") as stderr:
            process = subprocess.Popen(  # noqa: ASYNC220 - starting a process does not wait for it
                [sys.executable, "-m", "tests.support.soak_worker"], cwd=ROOT, env=env, stderr=stderr
            )
        self.processes[process.pid] = process
        self.logs[process.pid] = log
        return process.pid

    def live(self) -> list[int]:
        return [pid for pid, process in self.processes.items() if process.poll() is None]

    async def kill(self, worker: int) -> None:
        victim = self.processes[worker]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

    async def cut(self) -> float:
        assert self.proxy is not None
        self.proxy.cut()
        return time.time()

    async def stop(self) -> dict[int, str]:
        for pid in self.live():
            self.processes[pid].send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return {pid: path.read_text(errors="replace") for pid, path in self.logs.items()}
