"""OpenTelemetry tracing for a pyncette app (``pip install "pyncette-core[opentelemetry]"``).

::

    from pyncette.tracing import use_tracing

    app = Pyncette(...)
    use_tracing(app)  # spans go to the globally configured tracer provider

Every execution is one span named ``pyncette <task>`` (the task's or template's name), with these
attributes:

=========================  ==========================================================================
attribute                  value
=========================  ==========================================================================
``pyncette.task``          the task's name (a dynamic task's template name)
``pyncette.instance``      the dynamic instance's name; absent for a static task
``pyncette.scheduled_at``  the slot being run, ISO 8601 in the task's time zone
``pyncette.attempt``       1 for the first try of a slot, 2 for its first retry...
``pyncette.fencing_token`` the lease's fencing token; absent under ``AT_MOST_ONCE``
``pyncette.worker_id``     the worker running it
=========================  ==========================================================================

A task that raises ends its span with status ERROR and the exception recorded; heartbeats and a
lost lease are span events. Spans the task itself starts are children of the execution's span. The
plugin is a middleware contributed through ``pyncette_middlewares``, so it wraps the app's own
middlewares; it can also be passed as ``Pyncette(plugins=[TracingPlugin()])``.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from opentelemetry import trace

from pyncette.hookspecs import hookimpl

if TYPE_CHECKING:
    from pyncette.context import Context
    from pyncette.model import Lease
    from pyncette.pyncette import Pyncette

INSTRUMENTATION_NAME = "pyncette"


def _version() -> str:
    try:
        return importlib.metadata.version("pyncette-core")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def execution_attributes(context: Context) -> dict[str, str | int]:
    """The span attributes of one execution (see the module documentation)."""
    task = context.task
    attributes: dict[str, str | int] = {
        "pyncette.task": task.template.name,
        "pyncette.scheduled_at": context.scheduled_at.isoformat(),
        "pyncette.attempt": context.attempt,
        "pyncette.worker_id": context.app_context.app.worker_id,
    }
    if task.is_instance:
        attributes["pyncette.instance"] = task.name
    if context.fencing_token is not None:
        attributes["pyncette.fencing_token"] = context.fencing_token
    return attributes


class TracingPlugin:
    """A pyncette plugin that wraps every execution in an OpenTelemetry span."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, _version(), tracer_provider=tracer_provider)
        self._spans: weakref.WeakKeyDictionary[Context, trace.Span] = weakref.WeakKeyDictionary()

    @hookimpl
    def pyncette_middlewares(self, app: Pyncette) -> Sequence[Callable[..., Awaitable[None]]]:
        return [self.middleware]

    async def middleware(self, context: Context, next: Callable[[], Awaitable[None]]) -> None:
        name = f"pyncette {context.task.template.name}"
        with self.tracer.start_as_current_span(
            name, kind=trace.SpanKind.INTERNAL, attributes=execution_attributes(context)
        ) as span:
            self._spans[context] = span
            try:
                await next()
            finally:
                self._spans.pop(context, None)

    @hookimpl
    def pyncette_on_heartbeat(self, context: Context, lease: Lease) -> None:
        span = self._spans.get(context)
        if span is not None:
            span.add_event("heartbeat", {"pyncette.locked_until": lease.locked_until.isoformat()})

    @hookimpl
    def pyncette_on_lease_lost(self, context: Context | None) -> None:
        span = self._spans.get(context) if context is not None else None
        if span is not None:
            span.add_event("lease lost")


def use_tracing(app: Pyncette, tracer_provider: Any = None) -> TracingPlugin:
    """Trace every execution of ``app`` (with the global tracer provider unless one is given)."""
    plugin = TracingPlugin(tracer_provider)
    app.plugin_manager.register(plugin)
    app._chain = None  # the middleware chain is built on first use; include this plugin's
    return plugin


use_opentelemetry = use_tracing

__all__ = ["TracingPlugin", "execution_attributes", "use_opentelemetry", "use_tracing"]
