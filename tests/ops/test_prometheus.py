"""Prometheus metrics, scraped over HTTP while an app runs."""

from __future__ import annotations

import datetime
import urllib.request
from typing import Any

import anyio
import pytest

from pyncette import Context, FailureMode, Pyncette
from pyncette.errors import LeaseLostException
from pyncette.healthcheck import use_healthcheck_server
from pyncette.testing import FakeClock, run_until
from tests.core.conftest import START

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from pyncette.prometheus import PrometheusPlugin, use_prometheus  # noqa: E402

pytestmark = pytest.mark.anyio
MINUTE = datetime.timedelta(minutes=1)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition at ``url``, by name and sorted labels."""
    text = await anyio.to_thread.run_sync(_fetch, url)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def make_app() -> Pyncette:
    app = Pyncette(backend="memory", autoload_plugins=False)

    @app.task(interval=MINUTE)
    async def steady(context: Context) -> None:
        await context.heartbeat()

    @app.task(schedule="* * * * *", catch_up="latest")
    async def latest(context: Context) -> None:
        pass

    @app.task(schedule="* * * * *", catch_up="skip")
    async def skipping(context: Context) -> None:
        pass

    @app.dynamic_task(failure_mode=FailureMode.UNLOCK, max_attempts=2)
    async def doomed(context: Context) -> None:
        raise RuntimeError("every attempt fails")

    @app.dynamic_task(failure_mode=FailureMode.UNLOCK, max_attempts=3)
    async def flaky(context: Context) -> None:
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")

    @app.dynamic_task()
    async def taken_over(context: Context) -> None:
        if context.args.get("taken"):
            return
        # Another worker takes the instance over with a new definition: this run's lease is stale.
        await context.app_context.schedule_task("taken_over", context.task.name, interval=2 * MINUTE, taken=True, force=True)
        try:
            await context.heartbeat()
        except LeaseLostException:
            pass

    return app


async def test_metrics_are_recorded_through_hooks_and_served_on_their_own_port() -> None:
    registry = CollectorRegistry()
    app = make_app()
    plugin = use_prometheus(app, registry=registry, port=0, bind_address="127.0.0.1")
    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        assert plugin.port
        url = f"http://127.0.0.1:{plugin.port}/metrics"
        await ctx.schedule_task("flaky", "one", execute_at=START)
        await ctx.schedule_task("taken_over", "x", execute_at=START)
        await ctx.schedule_task("doomed", "one", execute_at=START)
        await run_until(ctx, START + MINUTE)
        clock.advance(5 * MINUTE)  # an outage: steady catches up one by one, latest coalesces
        await ctx.tick()
        samples = await scrape(url)
    assert value(samples, "pyncette_executions_total", task="steady", outcome="succeeded") == 6
    assert value(samples, "pyncette_heartbeats_total", task="steady") == 6
    assert value(samples, "pyncette_executions_total", task="flaky", outcome="failed") == 1
    assert value(samples, "pyncette_executions_total", task="flaky", outcome="succeeded") == 1
    assert value(samples, "pyncette_retries_total", task="flaky") == 1
    assert value(samples, "pyncette_coalesced_slots_total", task="latest") == 4
    # skipping's slots at START+2..5min were past its grace (one poll interval) at START+6min
    assert value(samples, "pyncette_missed_slots_total", task="skipping") == 4
    assert value(samples, "pyncette_executions_total", task="skipping", outcome="succeeded") == 2
    assert value(samples, "pyncette_executions_total", task="doomed", outcome="failed") == 1
    assert value(samples, "pyncette_executions_total", task="doomed", outcome="given_up") == 1
    assert value(samples, "pyncette_executions_total", task="taken_over", outcome="lease_lost") == 1
    assert value(samples, "pyncette_leases_lost_total", task="taken_over") == 1, "one execution, one lost lease"
    assert value(samples, "pyncette_execution_duration_seconds_count", task="steady") == 6
    # steady's slot at START+2min ran at START+6min: lateness 240 s, in the 300 s bucket, not in the 60 s one.
    assert value(samples, "pyncette_execution_lateness_seconds_sum", task="steady") >= 240
    assert value(samples, "pyncette_execution_lateness_seconds_bucket", task="steady", le="60.0") < 6
    assert value(samples, "pyncette_executions_in_flight", task="steady") == 0
    assert value(samples, "pyncette_polls_total", task="steady") >= 6
    assert value(samples, "pyncette_claimed_total", task="flaky") == 2
    # Caught up by the end: the last count (at START+6min, after the first claim) left nothing due.
    assert ("pyncette_due_backlog", (("task", "steady"),)) in samples
    assert value(samples, "pyncette_due_backlog", task="steady") == 0
    assert value(samples, "pyncette_oldest_due_age_seconds", task="steady") == 0
    assert value(samples, "pyncette_repository_operation_duration_seconds_count", operation="claim_due") > 0
    assert value(samples, "pyncette_repository_operation_duration_seconds_count", operation="register_tasks") >= 3
    assert value(samples, "pyncette_repository_operation_duration_seconds_count", operation="complete_tasks") > 0
    with pytest.raises(OSError):  # the server stopped with the app
        await anyio.to_thread.run_sync(_fetch, url)


async def test_store_errors_are_counted() -> None:
    registry = CollectorRegistry()
    app = make_app()
    use_prometheus(app, registry=registry, measure_executions=False)
    async with app.create(clock=FakeClock(START)) as ctx:
        with pytest.raises(Exception, match="no such task"):
            await ctx.schedule_task("nope", "x", interval=MINUTE)
        inner: Any = ctx.repository.inner  # type: ignore[attr-defined]

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("down")

        inner.get_task = broken
        with pytest.raises(ConnectionError):
            await ctx.get_task("steady")
    metrics = PrometheusPlugin(registry).metrics
    assert metrics.repository_errors.labels("get_task")._value.get() == 1
    assert registry.get_sample_value("pyncette_executions_total", {"task": "steady", "outcome": "succeeded"}) is None


async def test_metrics_mounted_on_the_health_check_port() -> None:
    from pyncette.prometheus import metrics_route

    registry = CollectorRegistry()
    app = make_app()
    use_prometheus(app, registry=registry)
    server = use_healthcheck_server(app, port=0, bind_address="127.0.0.1", routes={"/metrics": metrics_route(registry)})
    async with app.create(clock=FakeClock(START)) as ctx:
        await run_until(ctx, START + MINUTE)
        samples = await scrape(server.url + "/metrics")
    assert value(samples, "pyncette_executions_total", task="steady", outcome="succeeded") == 1


def test_one_registry_serves_several_apps() -> None:
    registry = CollectorRegistry()
    first, second = use_prometheus(make_app(), registry=registry), use_prometheus(make_app(), registry=registry)
    assert first.metrics is second.metrics


async def test_measured_repository_passes_the_store_clock_through() -> None:
    from tests.core.test_clock_sync import ClockedStore, app_on

    registry = CollectorRegistry()
    clock = FakeClock(START)
    app = app_on(ClockedStore(clock, offset=MINUTE), clock_sync=True)
    use_prometheus(app, registry=registry, measure_executions=False)
    async with app.create(clock=clock) as ctx:
        assert type(ctx.repository).__name__ == "MeasuredRepository"
        assert ctx.clock.now() == START + MINUTE
    labels = {"operation": "server_time"}
    assert registry.get_sample_value("pyncette_repository_operation_duration_seconds_count", labels) == 3


async def test_failed_lease_extensions_are_counted() -> None:
    from tests.core.test_plugins import BreakLeaseExtensions

    registry = CollectorRegistry()
    clock = FakeClock(START)
    app = Pyncette(backend="memory", autoload_plugins=False, plugins=[BreakLeaseExtensions()])
    metrics = use_prometheus(app, registry=registry).metrics
    second = datetime.timedelta(seconds=1)

    @app.task(interval=MINUTE, lease_duration=8 * second, heartbeat_interval=2 * second)
    async def beating(context: Context) -> None:
        for _ in range(6):  # the first automatic heartbeat is due after 2 s; the lease lasts 8 s
            if metrics.extension_failures.labels("beating")._value.get():
                return
            await anyio.wait_all_tasks_blocked()
            clock.advance(second)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + MINUTE)
    assert registry.get_sample_value("pyncette_lease_extension_failures_total", {"task": "beating"}) == 1
    assert registry.get_sample_value("pyncette_executions_total", {"task": "beating", "outcome": "succeeded"}) == 1
