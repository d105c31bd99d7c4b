"""Plugin discovery, backend selection and the three hook families, through a real installed plugin."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.errors import ConfigurationError, LeaseLostException, UnknownBackendError, UnknownOptionError
from pyncette.hookspecs import hookimpl
from pyncette.lazy import import_path, lazy_exports
from pyncette.memory import MemoryRepository
from pyncette.model import BackendInfo, TaskKey
from pyncette.plugins import create_plugin_manager, installed_backends
from pyncette.repository import RepositoryWrapper
from pyncette.testing import FakeClock, run_until
from tests.core.conftest import START

pytestmark = pytest.mark.anyio
S = datetime.timedelta(seconds=1)
T = TypeVar("T")


def _installed(name: str) -> bool:
    return any(ep.name == name for ep in importlib.metadata.entry_points(group="pyncette"))


@pytest.fixture
def testplugin() -> Iterator[Any]:
    """The third-party plugin of tests/plugin_dist, which the test requirements install."""
    if not _installed("testplugin"):
        message = "pyncette-testplugin is not installed (pip install ./tests/plugin_dist)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    import pyncette_testplugin

    pyncette_testplugin.EVENTS.clear()
    yield pyncette_testplugin
    pyncette_testplugin.EVENTS.clear()


def test_memory_backend_is_registered_through_the_core_entry_point() -> None:
    entry = next(ep for ep in importlib.metadata.entry_points(group="pyncette") if ep.name == "memory")
    assert entry.value == "pyncette.memory"
    assert entry.dist is not None and entry.dist.name == "pyncette-core"


def test_backend_by_name() -> None:
    app = Pyncette(backend="memory")
    assert app.backend_name == "memory"


def test_default_backend_is_sqlite_in_memory_when_installed_else_memory() -> None:
    app = Pyncette()
    expected = "sqlite" if _installed("sqlite") else "memory"
    assert app.backend_name == expected


def test_default_without_autoloaded_plugins_is_memory() -> None:
    assert Pyncette(autoload_plugins=False).backend_name == "memory"


def test_unknown_backend_lists_installed_ones_and_the_distribution() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        Pyncette(backend="cassandra")
    message = str(caught.value)
    assert "'cassandra'" in message and "memory" in message and "pip install pyncette-cassandra" in message


def test_option_of_another_backend_is_rejected_at_once() -> None:
    with pytest.raises(UnknownOptionError, match="'redis_url'") as caught:
        Pyncette(backend="memory", redis_url="redis://localhost")
    if _installed("redis"):
        assert "belongs to backend 'redis'" in str(caught.value)


def test_option_of_a_backend_that_is_not_installed_names_the_distribution() -> None:
    with pytest.raises(UnknownOptionError) as caught:
        Pyncette(backend="memory", autoload_plugins=False, redis_url="redis://localhost")
    assert str(caught.value) == (
        "backend 'memory' does not accept option(s) 'redis_url' ('redis_url' belongs to backend 'redis', which is not "
        "installed: pip install pyncette-redis); it accepts: no options; installed backends: memory"
    )
    assert caught.value.installed == ["memory"]


def test_option_of_an_installed_backend_that_is_not_selected_names_it_and_its_distribution(testplugin: Any) -> None:
    with pytest.raises(UnknownOptionError) as caught:
        Pyncette(backend="memory", recording_label="x")
    message = str(caught.value)
    assert "'recording_label' belongs to backend 'recording' (pyncette-testplugin); select it with backend='recording'" in message
    assert "recording" in caught.value.installed and "memory" in caught.value.installed


def test_option_no_backend_knows_lists_the_installed_backends() -> None:
    with pytest.raises(UnknownOptionError) as caught:
        Pyncette(backend="memory", autoload_plugins=False, retries=3)
    assert str(caught.value) == (
        "backend 'memory' does not accept option(s) 'retries'; it accepts: no options; installed backends: memory"
    )


def test_unknown_option_prefix_names_the_missing_backend() -> None:
    with pytest.raises(UnknownBackendError, match="cassandra"):
        Pyncette(cassandra_hosts=["x"])


def test_backend_inferred_from_its_options(testplugin: Any) -> None:
    app = Pyncette(recording_label="inferred")
    assert app.backend_name == "recording"


def test_environment_narrows_autoloaded_plugins(monkeypatch: pytest.MonkeyPatch, testplugin: Any) -> None:
    monkeypatch.setenv("PYNCETTE_PLUGINS", "memory")
    assert "recording" not in installed_backends(create_plugin_manager())
    monkeypatch.setenv("PYNCETTE_PLUGINS", "testplugin")
    assert {"recording", "memory"} <= set(installed_backends(create_plugin_manager()))
    monkeypatch.delenv("PYNCETTE_PLUGINS")
    monkeypatch.setenv("PYNCETTE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert set(installed_backends(create_plugin_manager())) == {"memory"}


def test_misspelled_hook_implementation_fails_loudly() -> None:
    from pyncette.hookspecs import hookimpl

    class Typo:
        @hookimpl
        def pyncette_backend(self) -> list[Any]:
            return []

    with pytest.raises(Exception, match="pyncette_backend"):
        create_plugin_manager([Typo()], autoload=False)


def test_explicit_plugin_objects_are_registered() -> None:
    from pyncette.hookspecs import hookimpl
    from pyncette.memory import memory_repository
    from pyncette.model import BackendInfo

    class Inline:
        @hookimpl
        def pyncette_backends(self) -> list[BackendInfo]:
            return [BackendInfo(name="inline", factory=memory_repository, options={"inline_flag": "x"})]

    app = Pyncette(backend="inline", inline_flag=True, plugins=[Inline()], autoload_plugins=False)
    assert app.backend_name == "inline"


async def test_third_party_plugin_backend_middleware_and_heartbeat_hooks(testplugin: Any) -> None:
    clock = FakeClock(START)
    app = Pyncette(backend="recording", recording_label="mine")
    beats = anyio.Event()

    @app.task(interval=60 * S, lease_duration=8 * S, plugin_heartbeat=True)
    async def job(context: Context) -> None:
        assert isinstance(context.app_context.repository, MemoryRepository)
        for _ in range(4):  # the plugin's interval is lease/4 = 2 s: one step must do, four are plenty
            if any(event == "heartbeat" for event, _ in testplugin.EVENTS):
                break
            await anyio.wait_all_tasks_blocked()
            clock.advance(2 * S)
        beats.set()

    async with app.create(clock=clock) as ctx:
        assert ctx.repository.label == "mine"
        await run_until(ctx, START + 60 * S)
    events = [event for event, _ in testplugin.EVENTS]
    assert events[0] == "opened" and events[-1] == "closed"
    assert events.index("middleware-before") < events.index("heartbeat") < events.index("middleware-after")
    assert ("finished", "succeeded") in testplugin.EVENTS
    heartbeat_at = next(value for event, value in testplugin.EVENTS if event == "heartbeat")
    assert heartbeat_at == START + 62 * S + 8 * S, "heartbeat after lease/4 = 2s, extending by the lease"


async def test_plugin_middleware_runs_outside_application_middleware(testplugin: Any) -> None:
    clock = FakeClock(START)
    app = Pyncette(backend="recording")
    order: list[str] = []

    @app.middleware
    async def own(context: Context, next: Any) -> None:
        order.append(f"own-in after {testplugin.EVENTS[-1][0]}")
        await next()

    @app.task(interval=S)
    async def job(context: Context) -> None:
        pass

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + S)
    assert order == ["own-in after middleware-before"]


async def test_plugin_hears_of_a_lease_lost_to_a_take_over(testplugin: Any) -> None:
    """A forced take-over makes the running task's heartbeat fail: the plugin's ``pyncette_on_lease_lost`` hears of it."""
    clock = FakeClock(START)
    app = Pyncette(backend="recording")
    heard_when_raised: list[list[tuple[str, Any]]] = []

    @app.dynamic_task(lease_duration=10 * S)
    async def job(context: Context) -> None:
        await context.app_context.schedule_task(job, "a", interval=60 * S, force=True)  # takes the lease over
        with pytest.raises(LeaseLostException):
            await context.heartbeat()
        heard_when_raised.append([event for event in testplugin.EVENTS if event[0] == "lease-lost"])

    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(job, "a", interval=60 * S)
        await run_until(ctx, START + 60 * S)
    assert heard_when_raised == [[("lease-lost", "a")]], "the heartbeat that found the lease lost told the plugin"
    # The run's commit is then refused too: the same loss, heard once.
    assert [event for event in testplugin.EVENTS if event[0] in ("lease-lost", "finished")] == [
        ("lease-lost", "a"),
        ("finished", "lease_lost"),
    ]


class FailingLeaseExtensions(RepositoryWrapper):
    """A store on which extending a lease fails (the network, say); every other operation works."""

    async def around(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        if operation == "extend_lease":
            raise ConnectionError("store unreachable")
        return await call()


class BreakLeaseExtensions:
    @hookimpl
    def pyncette_repository_wrappers(self, app: Any) -> list[Any]:
        return [FailingLeaseExtensions]


async def test_plugin_hears_of_a_failed_lease_extension(testplugin: Any) -> None:
    """An automatic heartbeat that fails with a store error calls ``pyncette_on_lease_extension_failed``; the run goes on."""
    clock = FakeClock(START)
    app = Pyncette(backend="recording", plugins=[BreakLeaseExtensions()])

    @app.task(interval=60 * S, lease_duration=8 * S, plugin_heartbeat=True)
    async def job(context: Context) -> None:
        for _ in range(6):  # the first heartbeat is due after lease/4 = 2 s; the lease lasts 8 s
            if any(event == "lease-extension-failed" for event, _ in testplugin.EVENTS):
                return
            await anyio.wait_all_tasks_blocked()
            clock.advance(S)

    async with app.create(clock=clock) as ctx:
        await run_until(ctx, START + 60 * S)
        state = await ctx.repository.get_task(TaskKey("job"))
    assert ("lease-extension-failed", "ConnectionError") in testplugin.EVENTS
    assert not any(event == "heartbeat" for event, _ in testplugin.EVENTS), "no extension succeeded"
    assert ("finished", "succeeded") in testplugin.EVENTS, "a failed extension does not stop the run"
    assert state is not None and state.next_run == START + 120 * S and state.locked_by is None, "and it was committed"


DRIVERS = ("redis", "asyncpg", "aiomysql", "aiobotocore", "botocore", "aiosqlite")
STAND_IN_DRIVER = "pyncette_testplugin.stand_in_driver"
"""The test plugin's stand-in for a driver: only its ``lazy`` backend imports it (tests/plugin_dist)."""


def _run_python(program: str) -> Any:
    """Run ``program`` in a fresh interpreter (nothing imported yet) and decode the JSON it prints."""
    output = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def test_discovering_backends_imports_no_driver(testplugin: Any) -> None:
    """Plugin discovery lists every installed backend, yet imports a driver only for the backend in use.

    Every backend an entry point provides is listed (whichever backend distributions are installed),
    and neither the stand-in driver of the test plugin's ``lazy`` backend nor a real driver is imported.
    """
    watched = (*DRIVERS, STAND_IN_DRIVER)
    program = (
        "import json, sys; from pyncette import Pyncette; app = Pyncette(backend='memory'); "
        "from pyncette.plugins import installed_backends; "
        f"print(json.dumps([sorted(installed_backends(app.plugin_manager)), [m for m in {watched!r} if m in sys.modules]]))"
    )
    backends, drivers = _run_python(program)
    # Backend distributions register their backend under an entry point of the same name.
    backend_entry_points = {ep.name for ep in importlib.metadata.entry_points(group="pyncette")} - {"testplugin"}
    assert set(backends) == backend_entry_points | {"recording", "lazy"}
    assert drivers == []


def test_the_selected_backend_is_imported_when_the_app_is_built(testplugin: Any) -> None:
    watched = (*DRIVERS, STAND_IN_DRIVER)
    program = (
        "import json, sys; from pyncette import Pyncette; app = Pyncette(lazy_label='x'); "
        f"print(json.dumps([app.backend_name, sorted(m for m in {watched!r} if m in sys.modules)]))"
    )
    assert _run_python(program) == ["lazy", [STAND_IN_DRIVER]]


def test_a_factory_given_by_path_is_recognised_when_passed_directly(testplugin: Any) -> None:
    """A factory the plugin names by import path is matched to its backend, whose options are then checked."""
    from pyncette_testplugin import lazy_repository

    app = Pyncette(repository_factory=lazy_repository, lazy_label="direct")
    assert app.backend_name == "lazy"
    with pytest.raises(UnknownOptionError, match="'recording_label' belongs to backend 'recording'"):
        Pyncette(repository_factory=lazy_repository, recording_label="other")


def test_a_backend_whose_factory_cannot_be_imported_fails_with_a_clear_error() -> None:
    class BrokenPlugin:
        @hookimpl
        def pyncette_backends(self) -> list[BackendInfo]:
            return [BackendInfo(name="broken", factory="pyncette_no_such_module:factory", distribution="broken-dist")]

    with pytest.raises(ConfigurationError, match=r"backend 'broken' \(broken-dist\) could not be loaded: No module named"):
        Pyncette(backend="broken", plugins=[BrokenPlugin()])


def test_lazy_exports_import_on_first_access_and_reject_unknown_names() -> None:
    getter = lazy_exports("pyncette", {"import_path": "pyncette.lazy"})
    assert getter("import_path") is import_path
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        getter("nothing")
    with pytest.raises(ValueError, match="expected 'module:attribute'"):
        import_path("pyncette.lazy")


class PolicyRecorder:
    """Records the policy reports a plugin receives: execution outcomes and misfires."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, datetime.datetime, int, str]] = []
        self.misfires: list[tuple[str, int, int]] = []

    @hookimpl
    def pyncette_on_execution_finished(self, context: Context, outcome: str, duration: datetime.timedelta) -> None:
        self.outcomes.append((context.task.name, context.scheduled_at, context.attempt, outcome))

    @hookimpl
    def pyncette_on_misfire(self, task: Any, instance: str, missed: int, coalesced: int) -> None:
        self.misfires.append((task.name, missed, coalesced))


async def test_plugins_see_given_up_attempts_and_missed_and_coalesced_slots() -> None:
    recorder = PolicyRecorder()
    app = Pyncette(backend="memory", autoload_plugins=False, plugins=[recorder])

    @app.task(interval=60 * S, max_attempts=2, failure_mode="unlock", retry_delay=S)
    async def doomed(context: Context) -> None:
        raise RuntimeError("every attempt fails")

    @app.task(interval=10 * S, catch_up="skip", misfire_grace=S)
    async def skipping(context: Context) -> None:
        pass

    @app.task(interval=10 * S, catch_up="latest")
    async def latest(context: Context) -> None:
        pass

    clock = FakeClock(START)
    async with app.create(clock=clock) as ctx:
        clock.set(START + 55 * S)  # an outage: slots 10-50 of skipping and latest are late
        await ctx.tick()
        await run_until(ctx, START + 61 * S)
    assert [o for o in recorder.outcomes if o[0] == "doomed"] == [
        ("doomed", START + 60 * S, 1, "failed"),
        ("doomed", START + 60 * S, 2, "given_up"),
    ]
    assert sorted(recorder.misfires) == [("latest", 0, 4), ("skipping", 5, 0)]
    assert ("latest", START + 50 * S, 1, "succeeded") in recorder.outcomes
