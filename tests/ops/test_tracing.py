"""OpenTelemetry spans, collected with the SDK's in-memory exporter."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from pyncette import Context, ExecutionMode, FailureMode, Pyncette
from pyncette.testing import FakeClock, run_until
from tests.core.conftest import START

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyncette.tracing import TracingPlugin, use_tracing

pytestmark = pytest.mark.anyio
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_one_span_per_execution_with_its_attributes(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = Pyncette(backend="memory", autoload_plugins=False, worker_id="worker-1")
    inner_spans: list[Any] = []

    @app.dynamic_task(timezone="Europe/Dublin", schedule="0 12 * * *", max_attempts=3, failure_mode=FailureMode.UNLOCK)
    async def greet(context: Context) -> None:
        with trace.get_tracer("test", tracer_provider=provider).start_as_current_span("inside") as span:
            inner_spans.append(span)
            await context.heartbeat()
        if context.attempt == 1:
            raise ValueError("first attempt fails")

    @app.task(interval=MINUTE, execution_mode=ExecutionMode.AT_MOST_ONCE)
    async def fire_and_forget(context: Context) -> None:
        pass

    use_tracing(app, tracer_provider=provider)
    async with app.create(clock=FakeClock(START)) as ctx:
        await ctx.schedule_task("greet", "alice")
        await run_until(ctx, START + datetime.timedelta(hours=12, minutes=1))

    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("pyncette ")]
    greet_spans = [s for s in spans if s.name == "pyncette greet"]
    assert len(greet_spans) == 2
    first, second = greet_spans
    assert first.attributes is not None and second.attributes is not None
    assert dict(first.attributes) == {
        "pyncette.task": "greet",
        "pyncette.instance": "alice",
        "pyncette.scheduled_at": "2030-01-01T12:00:00+00:00",
        "pyncette.attempt": 1,
        "pyncette.fencing_token": first.attributes["pyncette.fencing_token"],
        "pyncette.worker_id": "worker-1",
    }
    assert second.attributes["pyncette.attempt"] == 2
    first_token, second_token = first.attributes["pyncette.fencing_token"], second.attributes["pyncette.fencing_token"]
    assert isinstance(first_token, int) and isinstance(second_token, int)
    assert second_token > first_token
    assert first.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in first.events] == ["heartbeat", "exception"]
    assert second.status.status_code is trace.StatusCode.UNSET
    # The task's own spans are children of the execution's span.
    inside = [s for s in exporter.get_finished_spans() if s.name == "inside"]
    assert [s.parent.span_id for s in inside if s.parent] == [first.context.span_id, second.context.span_id]
    forgotten = [s for s in spans if s.name == "pyncette fire_and_forget"]
    assert len(forgotten) == 12 * 60 + 1
    assert forgotten[0].attributes is not None
    assert "pyncette.fencing_token" not in forgotten[0].attributes
    assert "pyncette.instance" not in forgotten[0].attributes


async def test_the_plugin_can_be_passed_to_the_app(exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
    app = Pyncette(backend="memory", autoload_plugins=False, plugins=[TracingPlugin(provider)])

    @app.task(interval=MINUTE)
    async def tick(context: Context) -> None:
        pass

    async with app.create(clock=FakeClock(START)) as ctx:
        await run_until(ctx, START + 2 * MINUTE)
    assert [s.name for s in exporter.get_finished_spans()] == ["pyncette tick", "pyncette tick"]
