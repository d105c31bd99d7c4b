"""A worker program for multi-process tests: one dynamic task that records every execution.

Configured by the JSON in the environment variable ``PYNCETTE_TEST_WORKER``:
``backend``, ``options`` (backend options), ``mode`` ("at_least_once" / "at_most_once"),
``lease`` (seconds), ``heartbeat`` (seconds or null), ``poll_interval`` (seconds), ``ledger``
(a directory); optionally ``poll_backoff_max`` and ``store_timeout`` (seconds), and ``health_port``
with ``max_poll_age`` (seconds) to serve the health probes on 127.0.0.1. Each execution appends
``start`` and ``end`` lines to ``<ledger>/<pid>.log``:
``event<TAB>instance<TAB>pid<TAB>fencing token<TAB>unix time``. An instance whose argument
``sleep`` is set sleeps that many seconds between the two lines.

Run as ``python -m tests.support.worker_app``; the test process imports :func:`build_app` to seed
instances with the same task definition.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import anyio

from pyncette import Context, ExecutionMode, Pyncette, Task
from pyncette.healthcheck import use_healthcheck_server

CONFIG_VARIABLE = "PYNCETTE_TEST_WORKER"
TASK_NAME = "drain"


def build_app(config: dict[str, Any]) -> tuple[Pyncette, Task]:
    app = Pyncette(
        backend=config["backend"],
        poll_interval=config.get("poll_interval", 0.2),
        concurrency_limit=config.get("concurrency_limit", 100),
        batch_size=config.get("batch_size", 100),
        shutdown_grace=config.get("shutdown_grace", 5),
        poll_backoff_max=config.get("poll_backoff_max", 30),
        store_timeout=config.get("store_timeout", 30),
        **config["options"],
    )
    if config.get("health_port") is not None:
        use_healthcheck_server(app, port=config["health_port"], bind_address="127.0.0.1", max_poll_age=config.get("max_poll_age"))
    ledger_dir = Path(config["ledger"])
    ledger = open(ledger_dir / f"{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 - lives as long as the worker
    mode = ExecutionMode.AT_MOST_ONCE if config.get("mode") == "at_most_once" else ExecutionMode.AT_LEAST_ONCE
    heartbeat = config.get("heartbeat")

    def record(event: str, context: Context) -> None:
        ledger.write(f"{event}\t{context.task.name}\t{os.getpid()}\t{context.fencing_token}\t{time.time():.6f}\n")

    @app.dynamic_task(
        name=TASK_NAME,
        execution_mode=mode,
        lease_duration=datetime.timedelta(seconds=config.get("lease", 30)),
        heartbeat_interval=datetime.timedelta(seconds=heartbeat) if heartbeat else None,
    )
    async def drain(context: Context) -> None:
        record("start", context)
        pause = context.args.get("sleep")
        if isinstance(pause, (int, float)):
            await anyio.sleep(pause)
        record("end", context)

    return app, drain


def main() -> None:
    app, _ = build_app(json.loads(os.environ[CONFIG_VARIABLE]))
    app.main()


if __name__ == "__main__":
    main()
