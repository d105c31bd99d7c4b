"""Options, start-up validation, secrets and plugin registration of the PostgreSQL backend."""

from __future__ import annotations

import inspect
import logging
import socket
from importlib.metadata import entry_points
from pathlib import Path

import anyio
import pytest

from pyncette.errors import BackendError, ConfigurationError
from pyncette.postgres import postgres_repository
from pyncette.postgres._connection import Secrets
from pyncette.postgres.schema import TableName
from tests.support.startup import assert_one_clean_error, start_app

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Pa55"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "name",
    ["bad-name", "a.b.c", "1table", "x; DROP TABLE y", 'quo"te', "", ".t", "t.", "x" * 56, "ü"],
)
async def test_invalid_table_name_is_refused_before_connecting(name: str) -> None:
    with pytest.raises(ConfigurationError, match="postgres_table_name"):
        async with postgres_repository(postgres_url=f"postgres://127.0.0.1:{closed_port()}/db", postgres_table_name=name):
            pass


def test_table_names_are_folded_and_quoted() -> None:
    plain = TableName.parse("Pyncette_Tasks")
    assert (plain.schema, plain.name, plain.quoted) == (None, "pyncette_tasks", '"pyncette_tasks"')
    qualified = TableName.parse("jobs.tasks")
    assert qualified.quoted == '"jobs"."tasks"'
    assert qualified.quoted_index == '"tasks_due_idx"'
    assert qualified.channel == "pyncette:jobs.tasks"
    long = TableName.parse(("s" * 55) + "." + ("t" * 55))
    assert len(long.channel) <= 63
    assert long.channel.startswith("pyncette:")


@pytest.mark.parametrize("size", [0, -1, "3", True, 2.5])
async def test_invalid_pool_size(size: object) -> None:
    with pytest.raises(ConfigurationError, match="postgres_pool_size"):
        async with postgres_repository(postgres_pool_size=size):  # type: ignore[arg-type]
            pass


async def test_invalid_pool_object() -> None:
    with pytest.raises(ConfigurationError, match="postgres_pool"):
        async with postgres_repository(postgres_pool=object()):
            pass


async def test_unreachable_server_fails_fast_naming_the_option(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgres://someone:{SECRET}@127.0.0.1:{closed_port()}/db"
    with anyio.fail_after(15), pytest.raises(BackendError) as info:
        async with postgres_repository(postgres_url=url):
            pass
    message = str(info.value)
    assert "postgres_url" in message
    assert "127.0.0.1" in message
    assert "***" in message
    assert SECRET not in message
    assert SECRET not in caplog.text
    assert "ConnectionRefusedError" in message  # the driver's text, without its exception chained
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_wrong_credentials_fail_naming_the_option(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host_and_db = postgres_url.split("@", 1)[1]
    url = f"postgresql://no_such_pyncette_role:{SECRET}@{host_and_db}"
    with pytest.raises(ConfigurationError) as info:
        async with postgres_repository(postgres_url=url):
            pass
    message = str(info.value)
    assert "postgres_url" in message
    assert "no_such_pyncette_role" in message
    assert SECRET not in message
    assert SECRET not in caplog.text
    assert SECRET not in repr(info.value.__cause__)


async def test_missing_database_fails_naming_the_option(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_pyncette_db"
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        async with postgres_repository(postgres_url=url):
            pass
    assert "postgres_url" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [f"postgres://user:{SECRET}@127.0.0.1:notaport/db", f"postgres://127.0.0.1/db?password={SECRET}&sslmode=bogus"],
)
async def test_malformed_url_fails_without_leaking(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(15), pytest.raises((ConfigurationError, BackendError)) as info:
        async with postgres_repository(postgres_url=url):
            pass
    assert "postgres_url" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    cause = info.value.__cause__
    assert cause is None or SECRET not in str(cause)


def test_secrets_are_masked() -> None:
    secrets = Secrets(f"postgresql://bob:{SECRET}@db.example:5432/app?sslmode=require&password={SECRET}x")
    assert SECRET not in secrets.safe_url
    assert secrets.safe_url.startswith("postgresql://bob:***@db.example:5432/app?sslmode=require&password=***")
    assert secrets.scrub(f"failed for {SECRET}") == "failed for ***"
    assert Secrets("postgres://localhost/pyncette").safe_url == "postgres://localhost/pyncette"


async def test_unknown_options_are_ignored_and_common_ones_accepted(postgres_url: str, table_name: str) -> None:
    async with postgres_repository(
        postgres_url=postgres_url,
        postgres_table_name=table_name,
        concurrency_limit=3,
        batch_size=7,
        redis_url="redis://elsewhere",
        some_future_option=True,
    ) as repository:
        assert await repository.list_tasks("none", limit=1) is not None


def test_plugin_is_registered_and_declares_every_option() -> None:
    (entry_point,) = [ep for ep in entry_points(group="pyncette") if ep.name == "postgres"]
    assert entry_point.value == "pyncette.postgres.plugin"
    (info,) = entry_point.load().pyncette_backends()
    assert info.name == "postgres"
    assert info.distribution == "pyncette-postgres"
    assert info.load_factory() is postgres_repository
    accepted = {
        name
        for name, parameter in inspect.signature(inspect.unwrap(postgres_repository)).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert set(info.options) == accepted
    assert {
        "postgres_url",
        "postgres_table_name",
        "postgres_skip_table_create",
        "postgres_pool_size",
        "postgres_pool",
    } <= accepted


@pytest.mark.parametrize("failure", ["unreachable", "wrong credentials"])
def test_a_failed_start_is_one_error_line_without_the_password(postgres_url: str, tmp_path: Path, failure: str) -> None:
    host_and_db = postgres_url.split("@", 1)[1]
    if failure == "unreachable":
        host_and_db = f"127.0.0.1:{closed_port()}/test"
    url = f"postgresql://no_such_pyncette_role:{SECRET}@{host_and_db}"
    line = assert_one_clean_error(start_app(tmp_path, {"postgres_url": url}), option="postgres_url", secret=SECRET)
    assert ("BackendError" if failure == "unreachable" else "ConfigurationError") in line
