"""Prometheus metrics for a pyncette app (``pip install "pyncette-core[prometheus]"``).

::

    from pyncette.prometheus import use_prometheus

    app = Pyncette(...)
    use_prometheus(app, port=9100)  # or serve the default registry yourself

Metrics are collected by a plugin (:class:`PrometheusPlugin`) through the hooks of
:mod:`pyncette.hookspecs`; every label ``task`` is a task's name (a dynamic task's template, never an
instance name, so the number of series stays bounded):

==================================================  =========  ===================================================
metric                                              type       meaning
==================================================  =========  ===================================================
``pyncette_executions_total{task,outcome}``         counter    finished executions: succeeded, failed, given_up,
                                                               lease_lost
``pyncette_execution_duration_seconds{task}``       histogram  time from start to finish of an execution
``pyncette_execution_lateness_seconds{task}``       histogram  start minus the scheduled time of the slot
``pyncette_executions_in_flight{task}``             gauge      executions running now
``pyncette_retries_total{task}``                    counter    executions that were a retry (attempt > 1)
``pyncette_missed_slots_total{task}``               counter    slots dropped by the misfire policy
``pyncette_coalesced_slots_total{task}``            counter    slots folded into a later run
``pyncette_heartbeats_total{task}``                 counter    successful lease extensions
``pyncette_lease_extension_failures_total{task}``   counter    lease extensions that failed on a store error
``pyncette_leases_lost_total{task}``                counter    running executions whose lease was lost
``pyncette_polls_total{task}``                      counter    claims of due instances (``measure_ticks``)
``pyncette_claimed_total{task}``                    counter    instances claimed by those polls
``pyncette_due_backlog{task}``                      gauge      instances due but unclaimed, summed over the
                                                               task's partitions (``measure_backlog``)
``pyncette_oldest_due_age_seconds{task}``           gauge      how long the oldest of them has been claimable
                                                               (0 when none is due)
``pyncette_repository_operation_duration_seconds``  histogram  store round trips by ``operation``
                                                               (``measure_repositories``)
``pyncette_repository_operation_errors_total``      counter    store operations that raised, by ``operation``
==================================================  =========  ===================================================

The backlog gauges come from :meth:`~pyncette.repository.Repository.count_due`, asked right after
a poll of a scope claimed its batch, at most once per ``backlog_interval`` per scope, with the time
of that poll. They are store-wide numbers for the scopes this worker polls: workers polling the
same scopes report the same values, so aggregate them with ``max by (task)``, not ``sum``. A backend
whose ``count_due`` returns ``None`` reports no backlog gauges.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import anyio
import anyio.to_thread
import attrs
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pyncette.errors import describe_error
from pyncette.hookspecs import hookimpl
from pyncette.log_format import log_fields, scope_task
from pyncette.model import ClaimResult, DueSummary, Lease
from pyncette.repository import Repository, RepositoryWrapper

if TYPE_CHECKING:
    from pyncette.context import Context
    from pyncette.healthcheck import Response
    from pyncette.pyncette import Pyncette, PyncetteContext

logger = logging.getLogger(__name__)

T = TypeVar("T")

LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
"""Lateness spans milliseconds (a static task on time) to hours (catching up after an outage)."""
DEFAULT_BACKLOG_INTERVAL = datetime.timedelta(seconds=15)
"""How often each scope's backlog is counted by default: a typical Prometheus scrape interval."""
REPOSITORY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
"""Store round trips: sub-millisecond (SQLite, Redis on loopback) to seconds (a struggling server)."""


@attrs.define(eq=False)
class Metrics:
    """The metric objects of one registry (created once per registry and shared by every app using it)."""

    executions: Counter
    duration: Histogram
    lateness: Histogram
    in_flight: Gauge
    retries: Counter
    missed: Counter
    coalesced: Counter
    heartbeats: Counter
    extension_failures: Counter
    leases_lost: Counter
    polls: Counter
    claimed: Counter
    due_backlog: Gauge
    oldest_due_age: Gauge
    repository_duration: Histogram
    repository_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        task = ["task"]
        return cls(
            executions=Counter("pyncette_executions", "Finished task executions", [*task, "outcome"], registry=registry),
            duration=Histogram("pyncette_execution_duration_seconds", "Task execution duration", task, registry=registry),
            lateness=Histogram(
                "pyncette_execution_lateness_seconds",
                "Start of an execution minus its scheduled time",
                task,
                buckets=LATENESS_BUCKETS,
                registry=registry,
            ),
            in_flight=Gauge("pyncette_executions_in_flight", "Executions running now", task, registry=registry),
            retries=Counter("pyncette_retries", "Executions that retried a failed slot", task, registry=registry),
            missed=Counter("pyncette_missed_slots", "Slots dropped by the misfire policy", task, registry=registry),
            coalesced=Counter("pyncette_coalesced_slots", "Slots folded into a later run", task, registry=registry),
            heartbeats=Counter("pyncette_heartbeats", "Successful lease extensions", task, registry=registry),
            extension_failures=Counter(
                "pyncette_lease_extension_failures", "Lease extensions that failed on a store error", task, registry=registry
            ),
            leases_lost=Counter("pyncette_leases_lost", "Executions whose lease was lost", task, registry=registry),
            polls=Counter("pyncette_polls", "Claims of due instances", task, registry=registry),
            claimed=Counter("pyncette_claimed", "Instances claimed", task, registry=registry),
            due_backlog=Gauge("pyncette_due_backlog", "Instances due but unclaimed", task, registry=registry),
            oldest_due_age=Gauge(
                "pyncette_oldest_due_age_seconds",
                "How long the oldest due but unclaimed instance has been claimable",
                task,
                registry=registry,
            ),
            repository_duration=Histogram(
                "pyncette_repository_operation_duration_seconds",
                "Duration of store operations",
                ["operation"],
                buckets=REPOSITORY_BUCKETS,
                registry=registry,
            ),
            repository_errors=Counter(
                "pyncette_repository_operation_errors", "Store operations that raised", ["operation"], registry=registry
            ),
        )


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry | None = None) -> Metrics:
    """The pyncette metrics registered in ``registry`` (default: prometheus_client's global one)."""
    registry = REGISTRY if registry is None else registry
    with _metrics_lock:
        metrics = _metrics.get(registry)
        if metrics is None:
            metrics = _metrics[registry] = Metrics.create(registry)
        return metrics


def _task_label(context: Context | None) -> str:
    return context.task.template.name if context is not None else ""


class PrometheusPlugin:
    """A pyncette plugin that records :class:`Metrics`; register it with :func:`use_prometheus`.

    It can also be passed as ``Pyncette(plugins=[PrometheusPlugin()])``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        measure_repositories: bool = True,
        measure_ticks: bool = True,
        measure_executions: bool = True,
        measure_backlog: bool = True,
        backlog_interval: datetime.timedelta | float = DEFAULT_BACKLOG_INTERVAL,
    ) -> None:
        self.metrics = metrics_for(registry)
        self.port: int | None = None
        """The port of the server :func:`use_prometheus` started, once it started."""
        self.measure_repositories = measure_repositories
        self.measure_ticks = measure_ticks
        self.measure_executions = measure_executions
        self.measure_backlog = measure_backlog
        if not isinstance(backlog_interval, datetime.timedelta):
            backlog_interval = datetime.timedelta(seconds=backlog_interval)
        if backlog_interval < datetime.timedelta(0):
            raise ValueError(f"backlog_interval must not be negative, not {backlog_interval}")
        self.backlog_interval = backlog_interval

    @hookimpl
    def pyncette_middlewares(self, app: Pyncette) -> Sequence[Callable[..., Awaitable[None]]]:
        return [self.middleware] if self.measure_executions else []

    async def middleware(self, context: Context, next: Callable[[], Awaitable[None]]) -> None:
        task = _task_label(context)
        lateness = context.app_context.clock.now() - context.scheduled_at
        self.metrics.lateness.labels(task).observe(max(lateness.total_seconds(), 0.0))
        if context.attempt > 1:
            self.metrics.retries.labels(task).inc()
        with self.metrics.in_flight.labels(task).track_inprogress():
            await next()

    @hookimpl
    def pyncette_on_execution_finished(self, context: Context, outcome: str, duration: datetime.timedelta) -> None:
        if self.measure_executions:
            task = _task_label(context)
            self.metrics.executions.labels(task, outcome).inc()
            self.metrics.duration.labels(task).observe(duration.total_seconds())

    @hookimpl
    def pyncette_on_misfire(self, task: Any, instance: str, missed: int, coalesced: int) -> None:
        name = task.template.name
        if missed:
            self.metrics.missed.labels(name).inc(missed)
        if coalesced:
            self.metrics.coalesced.labels(name).inc(coalesced)

    @hookimpl
    def pyncette_on_heartbeat(self, context: Context, lease: Lease) -> None:
        self.metrics.heartbeats.labels(_task_label(context)).inc()

    @hookimpl
    def pyncette_on_lease_extension_failed(self, context: Context, error: BaseException) -> None:
        self.metrics.extension_failures.labels(_task_label(context)).inc()

    @hookimpl
    def pyncette_on_lease_lost(self, context: Context | None) -> None:
        self.metrics.leases_lost.labels(_task_label(context)).inc()

    @hookimpl
    def pyncette_repository_wrappers(self, app: Pyncette) -> Sequence[Callable[[Repository], Repository]]:
        if not (self.measure_repositories or self.measure_ticks or self.measure_backlog):
            return []
        return [lambda repository: MeasuredRepository(repository, self)]


class MeasuredRepository(RepositoryWrapper):
    """A repository that times every operation of the one it wraps, counts claims and measures backlogs."""

    def __init__(self, inner: Repository, plugin: PrometheusPlugin) -> None:
        super().__init__(inner)
        self._plugin = plugin
        self._metrics = plugin.metrics
        self._backlog_counted: dict[str, datetime.datetime] = {}  # scope -> the poll time it was last counted at
        self._backlogs: dict[str, dict[str, DueSummary]] = {}  # task label -> scope -> its last count

    async def around(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        if not self._plugin.measure_repositories:
            return await call()
        start = time.perf_counter()
        try:
            return await call()
        except Exception:
            self._metrics.repository_errors.labels(operation).inc()
            raise
        finally:
            self._metrics.repository_duration.labels(operation).observe(time.perf_counter() - start)

    async def claim_due(
        self,
        now: datetime.datetime,
        task: str,
        *,
        owner: str,
        lease_duration: datetime.timedelta,
        limit: int,
        instance: str | None = None,
    ) -> ClaimResult:
        result = await super().claim_due(now, task, owner=owner, lease_duration=lease_duration, limit=limit, instance=instance)
        if self._plugin.measure_ticks:
            label = scope_task(task)
            self._metrics.polls.labels(label).inc()
            if result.claimed:
                self._metrics.claimed.labels(label).inc(len(result.claimed))
        if self._plugin.measure_backlog:
            await self._measure_backlog(now, task)
        return result

    async def _measure_backlog(self, now: datetime.datetime, scope: str) -> None:
        """Count the backlog of ``scope`` if its last count is ``backlog_interval`` old; set the task's gauges."""
        last = self._backlog_counted.get(scope)
        if last is not None and now < last + self._plugin.backlog_interval:
            return
        self._backlog_counted[scope] = now
        label = scope_task(scope)
        try:
            summary = await self.count_due(now, scope)
        except Exception as exc:  # a metric must never fail the poll that already claimed work
            logger.warning("counting the due backlog of %s failed: %s", scope, describe_error(exc), extra=log_fields(label))
            return
        if summary is None:
            return
        scopes = self._backlogs.setdefault(label, {})
        scopes[scope] = summary
        oldest = min((s.oldest for s in scopes.values() if s.oldest is not None), default=None)
        self._metrics.due_backlog.labels(label).set(sum(s.count for s in scopes.values()))
        age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
        self._metrics.oldest_due_age.labels(label).set(age)


def metrics_route(registry: CollectorRegistry | None = None) -> Callable[[PyncetteContext], Awaitable[Response]]:
    """A route for :func:`pyncette.healthcheck.use_healthcheck_server` that serves the metrics.

    ``use_healthcheck_server(app, port=8080, routes={"/metrics": metrics_route()})`` serves probes
    and metrics on one port.
    """
    source = REGISTRY if registry is None else registry

    async def route(app_context: PyncetteContext) -> Response:
        return 200, CONTENT_TYPE_LATEST, generate_latest(source)

    return route


def use_prometheus(
    app: Pyncette,
    measure_repositories: bool = True,
    measure_ticks: bool = True,
    measure_executions: bool = True,
    *,
    measure_backlog: bool = True,
    backlog_interval: datetime.timedelta | float = DEFAULT_BACKLOG_INTERVAL,
    registry: CollectorRegistry | None = None,
    port: int | None = None,
    bind_address: str = "0.0.0.0",
) -> PrometheusPlugin:
    """Record Prometheus metrics of ``app`` (the pyncette 1.x API) and return the plugin.

    Metrics go to ``registry`` (default: prometheus_client's global registry, which
    ``prometheus_client.start_http_server`` and ``make_asgi_app`` serve). With ``port``, an HTTP
    server on ``bind_address:port`` serves the metrics while the app runs (``port=0`` picks a free
    port: the plugin's ``port`` holds it once the app started). ``measure_backlog`` counts each
    polled scope's due backlog at most every ``backlog_interval`` (a timedelta or seconds).
    """
    plugin = PrometheusPlugin(
        registry,
        measure_repositories=measure_repositories,
        measure_ticks=measure_ticks,
        measure_executions=measure_executions,
        measure_backlog=measure_backlog,
        backlog_interval=backlog_interval,
    )
    app.plugin_manager.register(plugin)
    app._chain = None  # the middleware chain is built on first use; include this plugin's
    if port is not None:
        source = REGISTRY if registry is None else registry

        async def prometheus_server() -> AsyncIterator[Any]:
            server, thread = start_http_server(port, bind_address, registry=source)
            plugin.port = server.server_port
            try:
                yield server
            finally:
                await anyio.to_thread.run_sync(server.shutdown)
                server.server_close()
                thread.join(timeout=5)

        app.fixture(name="prometheus_server")(prometheus_server)
    return plugin


__all__ = ["MeasuredRepository", "Metrics", "PrometheusPlugin", "metrics_for", "metrics_route", "use_prometheus"]
