"""The soak test's worker program: a mix of tasks in both execution modes, every run in a ledger.

Tasks (names are shared with the driver, which imports :func:`build_soak_app`):

- ``static_alo`` and ``static_amo``: static tasks due every second (cron ``* * * * * *``), one
  per execution mode;
- ``dyn_alo`` and ``dyn_amo``: dynamic templates whose instances the driver schedules (recurring
  ``*/N`` second cron schedules or once-off ``execute_at``); an instance sleeps its ``sleep``
  argument (seconds) while it runs.

Every AT_LEAST_ONCE task catches up on every missed slot and heartbeats its lease, so a slot is
re-run only after a worker died or lost its lease. A worker process is configured by the JSON in
``PYNCETTE_SOAK_WORKER``: ``backend``, ``options``, ``ledger`` (a directory), ``lease`` and
``poll_interval`` (seconds); the in-process soak (:mod:`tests.soak.in_process`) builds the same app
per worker with its own store and worker number. Each execution appends JSON lines to the worker's
ledger, ``<ledger>/<worker>.jsonl`` (the worker is the pid of a worker process):
``{"ev": "start", "run", "instance", "mode", "slot", "token", "pid", "t"}`` before the body (``pid``
is the worker), ``{"ev": "end", "run", "t"}`` after it, and ``{"ev": "outcome", "run", "outcome"}``
once the scheduler reports how the execution ended (see ``pyncette_on_execution_finished``).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import time
from pathlib import Path
from typing import IO, Any, Mapping

import anyio

from pyncette import Context, ExecutionMode, Pyncette, Task, hookimpl
from pyncette.repository import RepositoryFactory

CONFIG_VARIABLE = "PYNCETTE_SOAK_WORKER"
STATIC_ALO = "static_alo"
STATIC_AMO = "static_amo"
DYNAMIC_ALO = "dyn_alo"
DYNAMIC_AMO = "dyn_amo"
MODES = {ExecutionMode.AT_LEAST_ONCE: "at_least_once", ExecutionMode.AT_MOST_ONCE: "at_most_once"}


class _Ledger:
    """Appends one JSON line per event with a single write, so a SIGKILL cuts at most one line."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self.runs = itertools.count()

    def write(self, **record: Any) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")

    @hookimpl
    def pyncette_on_execution_finished(self, context: Any, outcome: str, duration: datetime.timedelta) -> None:
        run = getattr(context, "soak_run", None)
        if run is not None:
            self.write(ev="outcome", run=run, outcome=outcome)


def open_ledger(directory: Path, worker: int) -> IO[str]:
    """The line-buffered ledger file of ``worker`` in the ledger ``directory``."""
    return open(directory / f"{worker}.jsonl", "a", buffering=1)


def build_soak_app(
    config: Mapping[str, Any],
    *,
    worker: int | None = None,
    ledger: IO[str] | None = None,
    repository_factory: RepositoryFactory | None = None,
) -> tuple[Pyncette, dict[str, Task]]:
    """The app of soak worker ``worker`` recording into ``ledger``; without a worker, only its dynamic templates (for the driver).

    The store is ``repository_factory`` when given, else ``config["backend"]`` with ``config["options"]``.
    """
    journal = _Ledger(ledger if worker is not None else None)
    lease = datetime.timedelta(seconds=config.get("lease", 3.0))
    heartbeat = lease / 3
    store: dict[str, Any] = (
        {"repository_factory": repository_factory}
        if repository_factory is not None
        else {"backend": config["backend"], **config["options"]}
    )
    app = Pyncette(
        poll_interval=config.get("poll_interval", 0.2),
        concurrency_limit=config.get("concurrency_limit", 50),
        batch_size=config.get("batch_size", 50),
        shutdown_grace=config.get("shutdown_grace", 5),
        worker_id=None if worker is None else f"soak-{worker}",
        plugins=[journal],
        **store,
    )

    async def body(context: Context) -> None:
        run = f"{worker}-{next(journal.runs)}"
        setattr(context, "soak_run", run)  # noqa: B010 - read back by the outcome hook
        journal.write(
            ev="start",
            run=run,
            instance=context.task.full_name,
            mode=MODES[context.task.template.execution_mode],
            slot=context.scheduled_at.timestamp(),
            token=context.fencing_token,
            pid=worker,
            t=time.time(),
        )
        pause = context.args.get("sleep")
        if isinstance(pause, (int, float)) and pause > 0:
            await anyio.sleep(pause)
        journal.write(ev="end", run=run, t=time.time())

    at_least_once: dict[str, Any] = {
        "execution_mode": ExecutionMode.AT_LEAST_ONCE,
        "lease_duration": lease,
        "heartbeat_interval": heartbeat,
        "catch_up": "all",
    }
    at_most_once: dict[str, Any] = {"execution_mode": ExecutionMode.AT_MOST_ONCE, "lease_duration": lease}
    tasks: dict[str, Task] = {}
    if worker is not None:
        tasks[STATIC_ALO] = app.task(name=STATIC_ALO, schedule="* * * * * *", sleep=0.05, **at_least_once)(body)
        tasks[STATIC_AMO] = app.task(name=STATIC_AMO, schedule="* * * * * *", sleep=0.05, **at_most_once)(body)
    tasks[DYNAMIC_ALO] = app.dynamic_task(name=DYNAMIC_ALO, **at_least_once)(body)
    tasks[DYNAMIC_AMO] = app.dynamic_task(name=DYNAMIC_AMO, **at_most_once)(body)
    return app, tasks


def main() -> None:
    config = json.loads(os.environ[CONFIG_VARIABLE])
    with open_ledger(Path(config["ledger"]), os.getpid()) as ledger:
        app, _ = build_soak_app(config, worker=os.getpid(), ledger=ledger)
        app.main()


if __name__ == "__main__":
    main()
