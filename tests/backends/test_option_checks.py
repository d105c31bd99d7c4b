"""Every backend checks its flag and number options strictly, before it connects to anything.

A flag takes only ``True`` or ``False`` (``sqlite_wal="off"`` used to turn WAL on), a number only an
``int`` or ``float`` in range; the error names the option and the value given.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from typing import Any

import pytest

from pyncette import Pyncette
from pyncette.errors import ConfigurationError
from pyncette.plugins import FIRST_PARTY_BACKENDS, create_plugin_manager, installed_backends
from tests.support.servers import free_port

pytestmark = pytest.mark.anyio

FLAGS = {
    "sqlite": ["sqlite_wal", "sqlite_skip_table_create"],
    "redis": ["redis_cluster"],
    "postgres": ["postgres_skip_table_create", "postgres_notify"],
    "mysql": ["mysql_skip_table_create"],
    "dynamodb": ["dynamodb_skip_table_create"],
}
NUMBERS: dict[str, dict[str, list[Any]]] = {
    "sqlite": {
        "sqlite_busy_timeout": ["5", -1, True, math.nan, math.inf],
        "sqlite_busy_retries": [1.5, -1, "3", True],
    },
    "redis": {
        "redis_timeout": [0, "5", True, math.inf],
        "redis_pool_size": [1, 2.5, "4", True],
    },
    "postgres": {"postgres_pool_size": [0, "4", True, 1.5]},
    "mysql": {
        "mysql_port": [0, 70000, "3306", True],
        "mysql_pool_size": [0, "4", True],
        "mysql_connect_timeout": ["x", 0, -1, True],
    },
    "dynamodb": {},
}
NOT_FLAGS = ["off", "no", 0, 1, None]


def valid_options(backend: str) -> dict[str, Any]:
    """Options that would pass every check; the servers they name are never reached."""
    port = free_port()
    return {
        "sqlite": {"sqlite_database": ":memory:"},
        "redis": {"redis_url": f"redis://127.0.0.1:{port}/0"},
        "postgres": {"postgres_url": f"postgresql://nobody@127.0.0.1:{port}/test"},
        "mysql": {"mysql_host": "127.0.0.1", "mysql_port": port, "mysql_user": "nobody", "mysql_database": "test"},
        "dynamodb": {"dynamodb_region_name": "us-east-1", "dynamodb_endpoint": f"http://127.0.0.1:{port}"},
    }[backend]


def cases() -> list[Any]:
    found = []
    for backend in FIRST_PARTY_BACKENDS:
        found += [pytest.param(backend, flag, value, id=f"{flag}={value!r}") for flag in FLAGS[backend] for value in NOT_FLAGS]
        for option, values in NUMBERS[backend].items():
            found += [pytest.param(backend, option, value, id=f"{option}={value!r}") for value in values]
    return found


def test_every_flag_and_number_option_is_covered() -> None:
    """The tables above list every option that a backend's factory annotates as a bool or a number."""
    for backend in FIRST_PARTY_BACKENDS:
        if importlib.util.find_spec(f"pyncette.{backend}") is None:
            continue
        factory = installed_backends(create_plugin_manager())[backend].load_factory()
        annotations = {name: str(p.annotation) for name, p in inspect.signature(factory).parameters.items()}
        flags = {name for name, kind in annotations.items() if kind == "bool"}
        numbers = {name for name, kind in annotations.items() if kind in ("int", "float", "int | None", "float | None")}
        assert flags == set(FLAGS[backend]), backend
        assert numbers - {"concurrency_limit", "batch_size"} == set(NUMBERS[backend]), backend


@pytest.mark.parametrize(("backend", "option", "value"), cases())
async def test_a_bad_flag_or_number_is_refused_naming_the_option_and_value(backend: str, option: str, value: Any) -> None:
    pytest.importorskip(f"pyncette.{backend}")
    factory = installed_backends(create_plugin_manager())[backend].load_factory()
    with pytest.raises(ConfigurationError) as caught:
        async with factory(**{**valid_options(backend), option: value}):
            pytest.fail("must not start")
    message = str(caught.value)
    assert option in message and repr(value) in message, message
    assert "127.0.0.1" not in message  # refused before any connection was tried


@pytest.mark.parametrize(
    ("option", "value"),
    [("configure_signals", "no"), ("autoload_plugins", 1), ("clock_sync", "off"), ("concurrency_limit", 2.0), ("batch_size", 0)],
)
def test_app_flags_and_numbers_are_checked_strictly(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Pyncette(backend="memory", **{option: value})
    assert option in str(caught.value) and repr(value) in str(caught.value)
