"""The health check server, probed over HTTP while an app runs."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.healthcheck import HealthcheckServer, is_alive, is_ready, use_healthcheck_server
from pyncette.pyncette import PyncetteContext
from pyncette.testing import FakeClock
from tests.ops.conftest import free_port

pytestmark = pytest.mark.anyio
S = datetime.timedelta(seconds=1)


def make_app(**kwargs: Any) -> Pyncette:
    app = Pyncette(backend="memory", autoload_plugins=False, **kwargs)

    @app.task(interval=datetime.timedelta(minutes=1))
    async def minutely(context: Context) -> None:
        pass

    return app


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def get(server: HealthcheckServer, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    status, content_type, body = await anyio.to_thread.run_sync(_get, server.url + path, method)
    return status, json.loads(body) if content_type == "application/json" and body else {}


async def test_ready_after_a_successful_poll_and_unready_when_the_poll_is_stale() -> None:
    app = make_app()
    server = use_healthcheck_server(app, port=0, bind_address="127.0.0.1", max_poll_age=30)
    clock = FakeClock()
    async with app.create(clock=clock) as ctx:
        assert server.port != 0
        status, document = await get(server, "/readyz")
        assert status == 503 and document["status"] == "unavailable" and document["last_successful_poll"] is None
        assert (await get(server, "/livez"))[0] == 200  # not started: alive
        await ctx.tick()
        for path in ("/readyz", "/health", "/healthz", "/"):
            status, document = await get(server, path)
            assert status == 200, path
        assert document["status"] == "ok"
        assert document["last_successful_poll"] == clock.now().isoformat()
        assert document["worker_id"] == app.worker_id
        clock.advance(30 * S)
        assert (await get(server, "/readyz"))[0] == 200
        assert (await get(server, "/livez"))[0] == 200
        clock.advance(S)
        assert (await get(server, "/readyz"))[0] == 503
        assert (await get(server, "/livez"))[0] == 503
        await ctx.tick()
        assert (await get(server, "/readyz"))[0] == 200
        ctx.shutdown()
        status, document = await get(server, "/readyz")
        assert status == 503 and document["shutting_down"] is True
        assert (await get(server, "/livez"))[0] == 200


class FailingClaims:
    """Wraps a repository so that claims fail while ``failing`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        if self.failing:
            raise ConnectionError("store down")
        return await self.inner.claim_due(*args, **kwargs)


async def test_a_store_that_fails_makes_the_worker_unready_but_alive() -> None:
    app = make_app()
    server = use_healthcheck_server(app, port=0, bind_address="127.0.0.1", max_poll_age=10)
    clock = FakeClock()
    async with app.create(clock=clock) as ctx:
        wrapper = FailingClaims(ctx.repository)
        ctx.repository = wrapper  # type: ignore[assignment]
        await ctx.tick()
        assert (await get(server, "/readyz"))[0] == 200
        wrapper.failing = True
        clock.advance(11 * S)
        await ctx.tick()
        assert (await get(server, "/readyz"))[0] == 503
        assert (await get(server, "/livez"))[0] == 200


async def test_the_server_runs_with_the_app_and_stops_with_it() -> None:
    port = free_port()
    app = make_app(poll_interval=datetime.timedelta(milliseconds=20))
    server = use_healthcheck_server(app, port=port, bind_address="127.0.0.1")
    async with app.create() as ctx, anyio.create_task_group() as group:
        group.start_soon(ctx.run)
        with anyio.fail_after(10):
            while ctx.last_successful_poll is None:
                await anyio.sleep(0.01)
        status, document = await get(server, "/readyz")
        assert status == 200 and document["status"] == "ok"
        status, _ = await get(server, "/readyz", method="HEAD")
        assert status == 200
        assert (await get(server, "/nope"))[0] == 404
        assert (await get(server, "/readyz", method="POST"))[0] == 405
        ctx.shutdown()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


async def test_a_custom_handler_and_extra_routes() -> None:
    app = make_app()
    verdicts = [True, False]

    async def handler(app_context: PyncetteContext) -> bool:
        return verdicts.pop(0)

    async def version(app_context: PyncetteContext) -> tuple[int, str, bytes]:
        return 200, "text/plain", b"v1\n"

    server = use_healthcheck_server(app, port=0, bind_address="127.0.0.1", healthcheck_handler=handler, routes={"/v": version})
    async with app.create(clock=FakeClock()):
        assert (await get(server, "/health"))[0] == 200
        assert (await get(server, "/health"))[0] == 503
        assert (await get(server, "/health"))[0] == 503  # the handler raised (empty list): unhealthy, logged
        assert await anyio.to_thread.run_sync(_get, server.url + "/v") == (200, "text/plain", b"v1\n")


async def test_garbage_and_silent_clients_do_not_hurt_the_server() -> None:
    app = make_app()
    server = use_healthcheck_server(app, port=0, bind_address="127.0.0.1")
    async with app.create(clock=FakeClock()):
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            await stream.send(b"nonsense\r\n\r\n")
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()  # closed without an answer
        async with await anyio.connect_tcp("127.0.0.1", server.port):
            pass
        assert (await get(server, "/livez"))[0] == 200


async def test_by_default_liveness_outlasts_a_store_call_that_times_out() -> None:
    app = make_app(store_timeout=60)
    clock = FakeClock()
    async with app.create(clock=clock) as ctx:
        await ctx.tick()
        clock.advance(40 * S)  # a claim on a silent network, still within store_timeout
        assert not is_ready(ctx), "readiness keeps its own bound: the store is not answering"
        assert is_alive(ctx), "the loop is waiting on the store, not stuck"
        clock.advance(22 * S)
        assert not is_alive(ctx), "beyond store_timeout plus a poll interval the loop is stuck"
