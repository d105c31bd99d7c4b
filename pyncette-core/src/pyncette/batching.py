"""Grouping of completions: executions that finish together are committed in one repository call."""

from __future__ import annotations

import datetime
import logging
from typing import Callable

import anyio
import attrs

from pyncette.clock import Clock
from pyncette.model import Completion
from pyncette.repository import Repository

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Pending:
    completion: Completion
    done: anyio.Event = attrs.field(factory=anyio.Event)
    applied: bool = False
    error: BaseException | None = None


@attrs.define(eq=False)
class CompletionBatcher:
    """Collects completions and applies them with :meth:`Repository.complete_tasks`.

    :meth:`complete` waits until the completion was applied (``True``) or refused (``False``);
    a store error is raised to every waiter of that batch. While one call is in flight, new
    completions accumulate and go out together in the next call, so the batch size adapts to the
    store's latency. :meth:`run` must be running in a task group for :meth:`complete` to return.
    A batch that takes longer than ``timeout`` is abandoned and fails with :class:`TimeoutError`
    (its executions retry): a hung store call must not stall them.
    """

    repository: Repository
    clock: Clock
    timeout: datetime.timedelta
    on_batch: Callable[[int], None] | None = None
    _pending: list[_Pending] = attrs.field(factory=list)
    _ready: anyio.Event = attrs.field(factory=anyio.Event)
    _closed: bool = False

    async def complete(self, completion: Completion) -> bool:
        pending = _Pending(completion)
        self._pending.append(pending)
        self._ready.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.applied

    def close(self) -> None:
        """Let :meth:`run` return once everything submitted so far has been applied."""
        self._closed = True
        self._ready.set()

    async def run(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                await self._ready.wait()
                self._ready = anyio.Event()
                continue
            batch, self._pending = self._pending, []
            with anyio.CancelScope(shield=True):
                await self._apply(batch)

    async def _apply(self, batch: list[_Pending]) -> None:
        try:
            with anyio.fail_after(self.timeout.total_seconds()):
                results = await self.repository.complete_tasks(self.clock.now(), [p.completion for p in batch])
        except Exception as exc:
            logger.warning("committing %d completion(s) failed: %s; they are retried", len(batch), exc)
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        for pending, applied in zip(batch, results, strict=True):
            pending.applied = applied
            pending.done.set()
