"""An HTTP endpoint for liveness and readiness probes (Kubernetes, load balancers, uptime checks).

::

    from pyncette.healthcheck import use_healthcheck_server

    app = Pyncette(...)
    use_healthcheck_server(app, port=8080)

The server starts with the app (it is an app fixture, set up before the first poll) and stops after
the last running task finished. It answers ``GET`` with a small JSON document and status 200 when
healthy, 503 when not:

- ``/livez`` (also ``/live``): the poll loop is turning: its last look at the store started within
  ``max_poll_age`` (by default also at least ``store_timeout`` plus a poll interval), or it has not
  started yet. A worker stuck in a store call beyond the timeout fails it.
- ``/readyz`` (also ``/ready``, ``/health``, ``/healthz`` and ``/``): the last *successful* poll of
  the store is within ``max_poll_age`` and the app is not shutting down. A worker that cannot reach
  its store fails it. ``healthcheck_handler`` (pyncette 1.x) replaces this check.

Both use the app's clock, so they can be tested with :class:`pyncette.testing.FakeClock`.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

import anyio
import anyio.abc
import attrs
from anyio.abc import SocketAttribute

if TYPE_CHECKING:
    from pyncette.pyncette import Pyncette, PyncetteContext

logger = logging.getLogger(__name__)

HealthcheckHandler = Callable[["PyncetteContext"], Awaitable[bool]]
"""``async def handler(app_context) -> bool``: whether the app is healthy (ready)."""
Response = tuple[int, str, bytes]
"""An HTTP status, a content type and a body."""
RouteHandler = Callable[["PyncetteContext"], Awaitable[Response]]
"""``async def route(app_context) -> (status, content_type, body)``: an extra path of the server."""

DEFAULT_MIN_POLL_AGE = datetime.timedelta(seconds=10)
"""The smallest default ``max_poll_age``: a few slow polls must not fail a probe."""
POLL_AGE_FACTOR = 3
"""The default ``max_poll_age`` is this many poll intervals (at least DEFAULT_MIN_POLL_AGE)."""
REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request line and headers."""
MAX_REQUEST_HEAD = 8192
"""Bytes of request line and headers accepted; a probe sends far less."""

READINESS_PATHS = frozenset({"/", "/health", "/healthz", "/ready", "/readyz"})
LIVENESS_PATHS = frozenset({"/live", "/livez"})
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


def default_max_poll_age(app: Pyncette) -> datetime.timedelta:
    return max(app.poll_interval * POLL_AGE_FACTOR, DEFAULT_MIN_POLL_AGE)


def _age(app_context: PyncetteContext, moment: datetime.datetime | None) -> datetime.timedelta | None:
    return None if moment is None else app_context.clock.now() - moment


def is_ready(app_context: PyncetteContext, max_poll_age: datetime.timedelta | None = None) -> bool:
    """Whether the last successful poll is within ``max_poll_age`` and the app is not shutting down."""
    bound = max_poll_age or default_max_poll_age(app_context.app)
    age = _age(app_context, app_context.last_successful_poll)
    return not app_context.shutting_down and age is not None and age <= bound


def is_alive(app_context: PyncetteContext, max_poll_age: datetime.timedelta | None = None) -> bool:
    """Whether the poll loop looked at the store within ``max_poll_age`` (true before its first look).

    The default bound also outlasts one store call that runs into the app's ``store_timeout``: on a
    silent network every call does, and a store outage must not get the worker restarted.
    """
    app = app_context.app
    bound = max_poll_age or max(default_max_poll_age(app), app.store_timeout + app.poll_interval)
    age = _age(app_context, app_context.last_tick)
    return age is None or age <= bound


async def default_healthcheck(app_context: PyncetteContext) -> bool:
    """The pyncette 1.x name of the readiness check with the default bound."""
    return is_ready(app_context)


@attrs.define(eq=False)
class HealthcheckServer:
    """The server :func:`use_healthcheck_server` registers; ``port`` is the bound port once started."""

    port: int
    bind_address: str | None = None
    healthcheck_handler: HealthcheckHandler | None = None
    max_poll_age: datetime.timedelta | None = None
    routes: Mapping[str, RouteHandler] = attrs.field(factory=dict)

    @property
    def url(self) -> str:
        host = self.bind_address if self.bind_address not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def fixture(self, app_context: PyncetteContext) -> AsyncIterator[HealthcheckServer]:
        """Serve while the app runs (an app fixture: set up before the first poll, torn down last)."""
        listener = await anyio.create_tcp_listener(local_host=self.bind_address, local_port=self.port)
        self.port = listener.extra(SocketAttribute.local_port)
        logger.info("health check server listening on %s", self.url)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            await self._handle(app_context, stream)

        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, handle)
            try:
                yield self
            finally:
                group.cancel_scope.cancel()
        logger.info("health check server stopped")

    async def _handle(self, app_context: PyncetteContext, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    method, path = await _read_request(stream)
                status, content_type, body = await self.respond(app_context, method, path)
                head = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                )
                await stream.send(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            except (TimeoutError, ValueError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except Exception:  # a probe must never take the scheduler down
                logger.exception("health check request failed")

    async def respond(self, app_context: PyncetteContext, method: str, path: str) -> Response:
        """The response to ``method path``; exposed for tests and for mounting into another server."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        route = self.routes.get(path)
        if route is not None:
            return await route(app_context)
        if path in LIVENESS_PATHS:
            return _status_response(app_context, is_alive(app_context, self.max_poll_age))
        if path in READINESS_PATHS:
            if self.healthcheck_handler is None:
                healthy = is_ready(app_context, self.max_poll_age)
            else:
                try:
                    healthy = bool(await self.healthcheck_handler(app_context))
                except Exception:
                    logger.exception("the health check handler raised")
                    healthy = False
            return _status_response(app_context, healthy)
        return 404, "text/plain", b"not found\n"


def _status_response(app_context: PyncetteContext, healthy: bool) -> Response:
    def stamp(moment: datetime.datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    document: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable",
        "worker_id": app_context.app.worker_id,
        "last_tick": stamp(app_context.last_tick),
        "last_successful_poll": stamp(app_context.last_successful_poll),
        "shutting_down": app_context.shutting_down,
    }
    return (200 if healthy else 503), "application/json", json.dumps(document).encode() + b"\n"


async def _read_request(stream: anyio.abc.SocketStream) -> tuple[str, str]:
    buffer = b""
    while b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
        buffer += await stream.receive(4096)
        if len(buffer) > MAX_REQUEST_HEAD:
            raise ValueError("request head too large")
    request_line = buffer.split(b"\n", 1)[0].decode("latin-1").strip()
    method, target, _version = request_line.split(" ", 2)
    return method.upper(), target.split("?", 1)[0]


def use_healthcheck_server(
    app: Pyncette,
    port: int = 8080,
    bind_address: str | None = None,
    healthcheck_handler: HealthcheckHandler | None = None,
    *,
    max_poll_age: datetime.timedelta | float | None = None,
    routes: Mapping[str, RouteHandler] | None = None,
) -> HealthcheckServer:
    """Serve liveness and readiness probes on ``port`` while ``app`` runs; return the server.

    ``bind_address`` defaults to every interface. ``port=0`` picks a free port, readable from the
    returned server's ``port`` once the app started. ``max_poll_age`` (timedelta or seconds) bounds
    the age of the last poll (default: three poll intervals, at least 10 seconds).
    ``healthcheck_handler`` (pyncette 1.x) replaces the readiness check; ``routes`` adds paths, such
    as :func:`pyncette.prometheus.metrics_route` for ``/metrics``.
    """
    if isinstance(max_poll_age, (int, float)):
        max_poll_age = datetime.timedelta(seconds=max_poll_age)
    server = HealthcheckServer(
        port=port,
        bind_address=bind_address,
        healthcheck_handler=healthcheck_handler,
        max_poll_age=max_poll_age,
        routes=dict(routes or {}),
    )
    app.fixture(name="healthcheck_server")(server.fixture)
    return server


__all__ = ["HealthcheckServer", "default_healthcheck", "is_alive", "is_ready", "use_healthcheck_server"]
