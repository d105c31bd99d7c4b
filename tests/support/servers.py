"""Reachability of the loopback servers the backend tests need.

A backend whose server cannot be reached is skipped with the reason printed, except under
``CI=true``, where that is a failure: CI must never turn a dead server into a green run.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL = os.environ.get("PYNCETTE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}
REDIS_URL = os.environ.get("PYNCETTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip the calling test (or fail under CI=true) when ``host:port`` does not accept connections."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing server is a failure, not a skip)")
    pytest.skip(message)


def free_port() -> int:
    """A loopback TCP port that nothing listens on (free when checked; for "unreachable server" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
