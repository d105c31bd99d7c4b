"""Retries with back-off, misfire handling, heartbeats, fencing tokens, pause/resume and bulk scheduling.

python examples/reliability.py
"""

from __future__ import annotations

import datetime
import random
from typing import Any, Awaitable, Callable

from pyncette import Context, FailureMode, Pyncette
from pyncette.utils import with_heartbeat

app = Pyncette(backend="memory")
minute = datetime.timedelta(minutes=1)


@app.task(
    interval=minute,
    failure_mode=FailureMode.UNLOCK,
    max_attempts=4,
    retry_delay=datetime.timedelta(seconds=5),
    retry_backoff=2,
)
async def flaky_sync(context: Context) -> None:
    """Up to 4 attempts per slot, 5 s, 10 s, 20 s apart; after that the slot is given up."""
    if random.random() < 0.5:
        raise ConnectionError(f"upstream unavailable (attempt {context.attempt})")


@app.task(schedule="0 2 * * *", timezone="Europe/Dublin", catch_up="latest", lease_duration=minute)
@with_heartbeat(lease_remaining_ratio=0.5)
async def nightly_report(context: Context) -> None:
    """Runs once for all nights missed during an outage; keeps its lease while it works and writes
    with its fencing token so a stale worker's late write is rejected downstream."""
    print(f"report for {context.scheduled_at:%Y-%m-%d}, fencing token {context.fencing_token}")


@app.dynamic_task(jitter=datetime.timedelta(minutes=30))
async def daily_digest(context: Context) -> None:
    """Every user's digest is spread over 00:00-00:30 by a stable per-instance offset."""
    print(f"digest for {context.args['email']}")


@app.middleware
async def log_attempts(context: Context, next: Callable[[], Awaitable[None]]) -> None:
    if context.attempt > 1:
        print(f"{context.task.name}: retry {context.attempt}")
    await next()


async def setup(context: Any) -> None:
    await context.schedule_tasks(
        [(daily_digest, f"user-{n}", {"schedule": "0 0 * * *", "email": f"user{n}@example.com"}) for n in range(1000)]
    )
    await context.pause_task(daily_digest, "user-7")
    await context.resume_task(daily_digest, "user-7", catch_up="skip")


if __name__ == "__main__":
    import anyio

    async def main() -> None:
        async with app.create() as context:
            await setup(context)
            await context.run()

    anyio.run(main)
