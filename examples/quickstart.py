"""Pyncette on the embedded default backend, SQLite in a file: stop it and start it again, and
the dynamic instance carries on from where it was (the store survives restarts).

    python examples/quickstart.py            # Ctrl-C stops it gracefully
"""

from __future__ import annotations

import datetime
import os
from typing import AsyncIterator

from pyncette import Context, Pyncette, PyncetteContext

app = Pyncette(sqlite_database=os.environ.get("QUICKSTART_DATABASE", "pyncette.db"))


@app.task(schedule="* * * * * */10")
async def every_ten_seconds(context: Context) -> None:
    print(f"static task, slot {context.scheduled_at:%H:%M:%S}", flush=True)


@app.dynamic_task()
async def reminder(context: Context) -> None:
    print(f"reminder for {context.args['user']}, slot {context.scheduled_at:%H:%M:%S}", flush=True)


@app.fixture()
async def reminders(app_context: PyncetteContext) -> AsyncIterator[None]:
    """Schedule one dynamic instance at start-up; scheduling it again keeps its pending run."""
    existing = await app_context.get_task(reminder, "alice")
    if existing is not None and existing.status is not None:
        print(f"found stored instance 'alice', next run {existing.status.next_run:%H:%M:%S} UTC", flush=True)
    await app_context.schedule_task(reminder, "alice", interval=datetime.timedelta(seconds=15), user="alice")
    yield


if __name__ == "__main__":
    app.main()
