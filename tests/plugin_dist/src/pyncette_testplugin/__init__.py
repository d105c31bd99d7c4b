"""A third-party plugin exercising every hook family, installed from tests/plugin_dist."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any, AsyncIterator, Awaitable, Callable

from pyncette.hookspecs import hookimpl
from pyncette.memory import MemoryRepository
from pyncette.model import BackendInfo, Lease

EVENTS: list[tuple[str, Any]] = []
"""Everything the hooks saw, in order; tests clear it."""


class RecordingRepository(MemoryRepository):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.claims = 0

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await super().claim_due(*args, **kwargs)


@contextlib.asynccontextmanager
async def recording_repository(*, recording_label: str = "default", **_: Any) -> AsyncIterator[RecordingRepository]:
    repository = RecordingRepository(recording_label)
    EVENTS.append(("opened", recording_label))
    yield repository
    EVENTS.append(("closed", recording_label))


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="recording",
            factory=recording_repository,
            options={"recording_label": "a label recorded when the store opens"},
            description="memory store that records what happens",
            distribution="pyncette-testplugin",
        )
    ]


async def tagging_middleware(context: Any, next: Callable[[], Awaitable[None]]) -> None:
    EVENTS.append(("middleware-before", context.task.name))
    await next()
    EVENTS.append(("middleware-after", context.task.name))


@hookimpl
def pyncette_middlewares(app: Any) -> list[Any]:
    return [tagging_middleware]


@hookimpl
def pyncette_heartbeat_interval(task: Any, lease_duration: datetime.timedelta) -> datetime.timedelta | None:
    if task.template.extra_args.get("plugin_heartbeat"):
        return lease_duration / 4
    return None


@hookimpl
def pyncette_on_heartbeat(context: Any, lease: Lease) -> None:
    EVENTS.append(("heartbeat", lease.locked_until))


@hookimpl
def pyncette_on_lease_lost(context: Any) -> None:
    EVENTS.append(("lease-lost", context.task.name if context else None))


@hookimpl
def pyncette_on_execution_finished(context: Any, outcome: str, duration: datetime.timedelta) -> None:
    EVENTS.append(("finished", outcome))
