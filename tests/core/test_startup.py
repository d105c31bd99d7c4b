"""How start-up errors reach the user: ``app.main()`` logs one line and exits 1; ``create()`` raises."""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
from typing import Any, AsyncIterator

import anyio
import pytest

from pyncette import Context, Pyncette
from pyncette.errors import BackendError, ConfigurationError, PyncetteException, pyncette_error_in
from pyncette.memory import MemoryRepository

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def failing_in_a_task_group(**_options: Any) -> AsyncIterator[MemoryRepository]:
    """A store whose start-up fails in a child task, so the error arrives wrapped in an exception group."""

    async def connect() -> None:
        raise BackendError("option fake_url: cannot reach the fake store")

    async with anyio.create_task_group() as group:
        group.start_soon(connect)
    yield MemoryRepository()  # pragma: no cover - never reached


def make_app(factory: Any = None) -> Pyncette:
    app = Pyncette(factory, backend=None if factory else "memory", configure_signals=False, autoload_plugins=False)

    @app.task(interval=datetime.timedelta(minutes=1))
    async def tick(context: Context) -> None:
        pass

    return app


def test_pyncette_error_in_unwraps_groups_of_pyncette_errors_only() -> None:
    error = ConfigurationError("x")
    assert pyncette_error_in(error) is error
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [error]), BackendError("y")])
    assert pyncette_error_in(nested) is error
    assert pyncette_error_in(ExceptionGroup("mixed", [error, ValueError("z")])) is None
    assert pyncette_error_in(ValueError("z")) is None


@contextlib.asynccontextmanager
async def misconfigured(**_options: Any) -> AsyncIterator[MemoryRepository]:
    raise ConfigurationError("option fake_table: not a valid name")
    yield MemoryRepository()  # pragma: no cover - never reached


async def test_create_raises_the_backend_error_itself() -> None:
    with pytest.raises(ConfigurationError, match="fake_table"):
        async with make_app(misconfigured).create():
            pytest.fail("must not start")
    with pytest.raises(BaseException) as caught:
        async with make_app(failing_in_a_task_group).create():
            pytest.fail("must not start")
    assert isinstance(pyncette_error_in(caught.value), BackendError)


def test_main_logs_one_line_and_exits_1_on_a_start_up_error(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(failing_in_a_task_group)
    with pytest.raises(SystemExit) as caught:
        app.main()
    assert caught.value.code == 1
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    expected = "cannot start: BackendError: option fake_url: cannot reach the fake store"
    assert [record.getMessage() for record in errors] == [expected]
    assert errors[0].exc_info is None


def test_main_lets_an_error_after_start_propagate() -> None:
    app = make_app()

    @app.fixture()
    async def stopper(context: Any) -> AsyncIterator[None]:
        context.shutdown()  # the app starts, then stops at once
        yield None
        raise ConfigurationError("fixture teardown failed")

    with pytest.raises(Exception) as caught:  # whatever wraps it, not a SystemExit
        app.main()
    error = pyncette_error_in(caught.value)
    assert isinstance(error, PyncetteException) and str(error) == "fixture teardown failed"
