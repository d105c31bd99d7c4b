"""A small app for the operations tests: ``tests.ops.sample_app:app`` or the factory ``:make_app``."""

from __future__ import annotations

import datetime
import os

import anyio

from pyncette import Context, Pyncette

RUNS: list[str] = []


def make_app() -> Pyncette:
    """A fresh app on the memory backend (the tests point it at a SQLite file with -o or PYNCETTE_*)."""
    app = Pyncette(backend="memory", poll_interval=datetime.timedelta(milliseconds=50), configure_signals=True)

    @app.task(schedule="0 12 * * *", timezone="Europe/Dublin")
    async def daily(context: Context) -> None:
        RUNS.append("daily")

    @app.dynamic_task()
    async def remind(context: Context) -> None:
        RUNS.append(context.task.name)
        marker = os.environ.get("SAMPLE_APP_MARKER")
        if marker:
            async with await anyio.open_file(marker, "a", encoding="utf-8") as file:
                await file.write(f"{context.task.name}\n")

    @app.partitioned_task(partition_count=4)
    async def spread(context: Context) -> None:
        RUNS.append(context.task.name)

    return app


app = make_app()
