"""The due-backlog gauges, scraped over HTTP, on the memory and SQLite backends."""

from __future__ import annotations

import contextlib
import datetime
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from pyncette import Context, Pyncette
from pyncette.memory import MemoryRepository, memory_repository
from pyncette.model import DueSummary
from pyncette.testing import FakeClock
from tests.core.conftest import START

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry  # noqa: E402

from pyncette.prometheus import use_prometheus  # noqa: E402
from tests.ops.test_prometheus import scrape, value  # noqa: E402

pytestmark = pytest.mark.anyio
SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "memory":
        return {"repository_factory": memory_repository}
    from pyncette.sqlite import sqlite_repository

    return {"repository_factory": sqlite_repository, "sqlite_database": str(tmp_path / "backlog.db")}


def make_app(backend: dict[str, Any]) -> Pyncette:
    # Two partitions chosen by the first letter of the name; a claim takes at most 2 instances.
    app = Pyncette(batch_size=2, autoload_plugins=False, **backend)

    @app.partitioned_task(partition_count=2, partition_selector=lambda count, name: 0 if name.startswith("a") else 1)
    async def users(context: Context) -> None:
        pass

    @app.task(interval=MINUTE)
    async def steady(context: Context) -> None:
        pass

    return app


async def test_backlog_is_summed_over_partitions_and_counted_once_per_interval(backend: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    app = make_app(backend)
    plugin = use_prometheus(app, registry=registry, port=0, bind_address="127.0.0.1", backlog_interval=MINUTE)
    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        url = f"http://127.0.0.1:{plugin.port}/metrics"
        for i in range(5):
            await ctx.schedule_task("users", f"a{i}", execute_at=START + (1 + i) * SECOND)
        for i in range(3):
            await ctx.schedule_task("users", f"b{i}", execute_at=START + (10 + i) * SECOND)
        clock.set(START + MINUTE)
        assert await ctx.tick() == 9  # 8 instances and steady
        # Each partition was counted once, right after its first claim of 2: a2..a4 and b2 were left.
        first = await scrape(url)
        # Within the interval nothing is counted again, although more came due and ran.
        await ctx.schedule_task("users", "a9", execute_at=START + MINUTE)
        clock.advance(10 * SECOND)
        assert await ctx.tick() == 1
        throttled = await scrape(url)
        clock.set(START + 2 * MINUTE)
        await ctx.tick()
        drained = await scrape(url)
    assert value(first, "pyncette_due_backlog", task="users") == 4
    assert value(first, "pyncette_oldest_due_age_seconds", task="users") == 57  # a2, due at START+3s
    assert value(first, "pyncette_due_backlog", task="steady") == 0
    assert ("pyncette_due_backlog", (("task", "steady"),)) in first
    assert value(throttled, "pyncette_due_backlog", task="users") == 4
    assert value(drained, "pyncette_due_backlog", task="users") == 0
    assert value(drained, "pyncette_oldest_due_age_seconds", task="users") == 0
    assert value(drained, "pyncette_repository_operation_duration_seconds_count", operation="count_due") == 2 * 3


class _Unmeasured(MemoryRepository):
    """A backend without the optional capability, or one whose count fails."""

    def __init__(self, error: Exception | None) -> None:
        super().__init__()
        self.error = error

    async def count_due(self, now: datetime.datetime, task: str) -> DueSummary | None:  # type: ignore[override]
        if self.error is not None:
            raise self.error
        return None


def _factory(error: Exception | None) -> Any:
    @contextlib.asynccontextmanager
    async def factory(**_options: Any) -> AsyncIterator[MemoryRepository]:
        yield _Unmeasured(error)

    return factory


async def test_a_backend_that_cannot_count_reports_no_backlog() -> None:
    registry = CollectorRegistry()
    app = make_app({"repository_factory": _factory(None)})
    use_prometheus(app, registry=registry)
    async with app.create(clock=FakeClock(START)) as ctx:
        await ctx.schedule_task("users", "a0", execute_at=START)
        assert await ctx.tick() == 1  # steady is first due a minute after start
    assert registry.get_sample_value("pyncette_due_backlog", {"task": "users"}) is None
    assert registry.get_sample_value("pyncette_executions_total", {"task": "users", "outcome": "succeeded"}) == 1


async def test_a_failing_count_is_logged_and_the_poll_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    app = make_app({"repository_factory": _factory(ConnectionError("store down"))})
    use_prometheus(app, registry=registry)
    with caplog.at_level(logging.WARNING, logger="pyncette.prometheus"):
        async with app.create(clock=FakeClock(START)) as ctx:
            await ctx.schedule_task("users", "a0", execute_at=START)
            assert await ctx.tick() == 1  # steady is first due a minute after start
    failures = [record for record in caplog.records if "due backlog" in record.getMessage()]
    assert {getattr(record, "task", None) for record in failures} == {"users", "steady"}
    assert registry.get_sample_value("pyncette_due_backlog", {"task": "users"}) is None
    assert registry.get_sample_value("pyncette_repository_operation_errors_total", {"operation": "count_due"}) == 3
