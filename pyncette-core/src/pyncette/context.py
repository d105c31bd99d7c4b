"""The :class:`Context` a task function receives."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from pyncette.model import JSON, Lease

if TYPE_CHECKING:
    from pyncette.pyncette import PyncetteContext
    from pyncette.task import Task


class Context:
    """One execution of a task.

    Attributes: ``task`` (the task or dynamic instance), ``args`` (its extra arguments),
    ``scheduled_at`` (the slot being run, in the task's time zone), ``attempt`` (1 for the first
    try of a slot, 2 for its first retry...), ``fencing_token`` (strictly increasing per instance
    across claims; ``None`` under AT_MOST_ONCE, where the lease is released before the run) and
    ``app_context``. Fixtures and values added with ``add_to_context`` are attributes too:
    ``context.db``.
    """

    def __init__(
        self,
        *,
        app_context: PyncetteContext,
        task: Task,
        scheduled_at: datetime.datetime,
        attempt: int = 1,
        lease: Lease | None = None,
        heartbeat: Callable[[], Awaitable[Lease]] | None = None,
    ) -> None:
        self.app_context = app_context
        self.task = task
        self.scheduled_at = scheduled_at
        self.attempt = attempt
        self._lease = lease
        self._heartbeat = heartbeat

    @property
    def args(self) -> dict[str, JSON]:
        return self.task.extra_args

    @property
    def fencing_token(self) -> int | None:
        return self._lease.token if self._lease is not None else None

    @property
    def lease(self) -> Lease | None:
        return self._lease

    async def heartbeat(self) -> None:
        """Extend this execution's lease; raise :class:`~pyncette.errors.LeaseLostException` if lost.

        Under AT_MOST_ONCE there is no lease to extend and this does nothing.
        """
        if self._heartbeat is not None:
            self._lease = await self._heartbeat()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.app_context._items[name]
        except KeyError:
            raise AttributeError(f"context has no attribute or fixture {name!r}") from None

    def __repr__(self) -> str:
        return f"<Context task={self.task.full_name!r} scheduled_at={self.scheduled_at.isoformat()} attempt={self.attempt}>"
