"""Grouping of completions: executions that finish together are committed in one repository call."""

from __future__ import annotations

import datetime
import logging

import anyio
import attrs

from pyncette.clock import Clock
from pyncette.errors import describe_error
from pyncette.log_format import log_fields, scope_task
from pyncette.model import Completion
from pyncette.repository import Repository

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Batch:
    """Completions that go out in one repository call; their callers wait on one event."""

    completions: list[Completion] = attrs.field(factory=list)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    results: list[bool] = attrs.field(factory=list)
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
    _open: _Batch | None = None
    _ready: anyio.Event = attrs.field(factory=anyio.Event)
    _closed: bool = False

    async def complete(self, completion: Completion) -> bool:
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
        index = len(batch.completions)
        batch.completions.append(completion)
        self._ready.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def close(self) -> None:
        """Let :meth:`run` return once everything submitted so far has been applied."""
        self._closed = True
        self._ready.set()

    async def run(self) -> None:
        while True:
            batch = self._open
            if batch is None:
                if self._closed:
                    return
                await self._ready.wait()
                self._ready = anyio.Event()
                continue
            self._open = None
            with anyio.CancelScope(shield=True):
                await self._apply(batch)

    async def _apply(self, batch: _Batch) -> None:
        try:
            with anyio.fail_after(self.timeout.total_seconds()):
                results = await self.repository.complete_tasks(self.clock.now(), batch.completions)
        except Exception as exc:
            tasks = {scope_task(completion.key.task) for completion in batch.completions}
            extra = log_fields(*tasks) if len(tasks) == 1 else None  # a batch of several tasks names none
            logger.warning(
                "committing %d completion(s) failed: %s; they are retried",
                len(batch.completions),
                describe_error(exc),
                extra=extra,
            )
            batch.error = exc
            batch.done.set()
            return
        if len(results) != len(batch.completions):
            batch.error = RuntimeError(f"complete_tasks returned {len(results)} results for {len(batch.completions)} completions")
            batch.done.set()
            return
        batch.results = results
        batch.done.set()
