"""A third-party plugin exercising every hook family, installed from tests/plugin_dist.

Two backends: ``recording`` (its factory imported with the plugin) and ``lazy`` (its factory given
by import path, imported, with its stand-in driver, only when an app selects it, as the real
backends do).
"""

from __future__ import annotations

import contextlib
import datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from pyncette.hookspecs import hookimpl
from pyncette.lazy import lazy_exports
from pyncette.memory import MemoryRepository
from pyncette.model import BackendInfo, Lease

if TYPE_CHECKING:
    from pyncette_testplugin.lazy_backend import lazy_repository

__all__ = ["EVENTS", "RecordingRepository", "lazy_repository", "recording_repository"]

# Like a real backend package: the factory (and its driver) is imported on first access of the name.
__getattr__ = lazy_exports(__name__, {"lazy_repository": "pyncette_testplugin.lazy_backend"})

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
        ),
        BackendInfo(
            name="lazy",
            factory="pyncette_testplugin.lazy_backend:lazy_repository",
            options={"lazy_label": "a label given to the stand-in driver"},
            description="memory store behind a stand-in driver imported only when used",
            distribution="pyncette-testplugin",
        ),
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
def pyncette_on_lease_extension_failed(context: Any, error: BaseException) -> None:
    EVENTS.append(("lease-extension-failed", type(error).__name__))


@hookimpl
def pyncette_on_execution_finished(context: Any, outcome: str, duration: datetime.timedelta) -> None:
    EVENTS.append(("finished", outcome))
