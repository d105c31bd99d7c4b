"""The soak test's worker program: a mix of tasks in both execution modes, every run in a ledger.

Tasks (names are shared with the driver, which imports :func:`build_soak_app`):

- ``static_alo`` and ``static_amo``: static tasks due every second (cron ``* * * * * *``), one
  per execution mode;
- ``dyn_alo`` and ``dyn_amo``: dynamic templates whose instances the driver schedules (recurring
  ``*/N`` second cron schedules or once-off ``execute_at``); an instance sleeps its ``sleep``
  argument (seconds) while it runs.

Every AT_LEAST_ONCE task catches up on every missed slot and heartbeats its lease, so a slot is
re-run only after a worker died or lost its lease. Configured by the JSON in
``PYNCETTE_SOAK_WORKER``: ``backend``, ``options``, ``ledger`` (a directory), ``lease`` and
``poll_interval`` (seconds). Each execution appends JSON lines to ``<ledger>/<pid>.jsonl``:
``{"ev": "start", "run", "instance", "mode", "slot", "token", "pid", "t"}`` before the body,
``{"ev": "end", "run", "t"}`` after it, and ``{"ev": "outcome", "run", "outcome"}`` once the
scheduler reports how the execution ended (see ``pyncette_on_execution_finished``).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import time
from pathlib import Path
from typing import IO, Any

import anyio

from pyncette import Context, ExecutionMode, Pyncette, Task, hookimpl

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


def build_soak_app(config: dict[str, Any], *, worker: bool = True) -> tuple[Pyncette, dict[str, Task]]:
    """The app of a soak worker, or with ``worker=False`` only its dynamic templates (for the driver)."""
    stream = open(Path(config["ledger"]) / f"{os.getpid()}.jsonl", "a", buffering=1) if worker else None  # noqa: SIM115
    ledger = _Ledger(stream)
    lease = datetime.timedelta(seconds=config.get("lease", 3.0))
    heartbeat = lease / 3
    app = Pyncette(
        backend=config["backend"],
        poll_interval=config.get("poll_interval", 0.2),
        concurrency_limit=config.get("concurrency_limit", 50),
        batch_size=config.get("batch_size", 50),
        shutdown_grace=config.get("shutdown_grace", 5),
        plugins=[ledger],
        **config["options"],
    )

    async def body(context: Context) -> None:
        run = f"{os.getpid()}-{next(ledger.runs)}"
        setattr(context, "soak_run", run)  # noqa: B010 - read back by the outcome hook
        ledger.write(
            ev="start",
            run=run,
            instance=context.task.full_name,
            mode=MODES[context.task.template.execution_mode],
            slot=context.scheduled_at.timestamp(),
            token=context.fencing_token,
            pid=os.getpid(),
            t=time.time(),
        )
        pause = context.args.get("sleep")
        if isinstance(pause, (int, float)) and pause > 0:
            await anyio.sleep(pause)
        ledger.write(ev="end", run=run, t=time.time())

    at_least_once: dict[str, Any] = {
        "execution_mode": ExecutionMode.AT_LEAST_ONCE,
        "lease_duration": lease,
        "heartbeat_interval": heartbeat,
        "catch_up": "all",
    }
    at_most_once: dict[str, Any] = {"execution_mode": ExecutionMode.AT_MOST_ONCE, "lease_duration": lease}
    tasks: dict[str, Task] = {}
    if worker:
        tasks[STATIC_ALO] = app.task(name=STATIC_ALO, schedule="* * * * * *", sleep=0.05, **at_least_once)(body)
        tasks[STATIC_AMO] = app.task(name=STATIC_AMO, schedule="* * * * * *", sleep=0.05, **at_most_once)(body)
    tasks[DYNAMIC_ALO] = app.dynamic_task(name=DYNAMIC_ALO, **at_least_once)(body)
    tasks[DYNAMIC_AMO] = app.dynamic_task(name=DYNAMIC_AMO, **at_most_once)(body)
    return app, tasks


def main() -> None:
    app, _ = build_soak_app(json.loads(os.environ[CONFIG_VARIABLE]))
    app.main()


if __name__ == "__main__":
    main()
