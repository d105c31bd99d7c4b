"""RepositoryWrapper: every operation of the contract reaches the wrapped repository through around()."""

from __future__ import annotations

import datetime
import inspect
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from pyncette.memory import MemoryRepository
from pyncette.model import Registration, TaskKey
from pyncette.repository import Repository, RepositoryWrapper

pytestmark = pytest.mark.anyio
T = TypeVar("T")
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
CONVENIENCES = {"commit_task", "register_task"}  # built on the operations, which are forwarded


def test_every_operation_of_the_contract_is_forwarded() -> None:
    operations = {
        name for name, member in vars(Repository).items() if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }
    assert operations - CONVENIENCES <= set(vars(RepositoryWrapper))
    assert "set_wakeup_callback" in vars(RepositoryWrapper)


async def test_around_sees_each_call_by_operation_name_and_returns_its_result() -> None:
    seen: list[str] = []

    class Recording(RepositoryWrapper):
        async def around(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
            seen.append(operation)
            return await call()

    inner = MemoryRepository()
    wrapper = Recording(inner)
    key = TaskKey("t", "a")
    await wrapper.register_tasks(NOW, [Registration(key=key, spec="{}", data="{}", next_run=NOW)])
    claimed = await wrapper.claim_due(NOW, "t", owner="w", lease_duration=datetime.timedelta(seconds=5), limit=10)
    state: Any = await wrapper.get_task(key)
    assert [c.state.key for c in claimed.claimed] == [key] and state.locked_by == "w"
    assert await wrapper.count_due(NOW, "t") == await inner.count_due(NOW, "t")
    assert await wrapper.server_time() is None
    assert seen == ["register_tasks", "claim_due", "get_task", "count_due", "server_time"]
