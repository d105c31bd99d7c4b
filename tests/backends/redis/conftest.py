"""Fixtures of the Redis backend tests: a unique namespace per test, cleaned up with SCAN + DEL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from tests.support.servers import REDIS_URL, require_server

_parts = urllib.parse.urlsplit(REDIS_URL)
REDIS_HOST = _parts.hostname or "127.0.0.1"
REDIS_PORT = _parts.port or 6379


def namespace_keys(client: redis.Redis, namespace: str) -> list[bytes]:
    """Every key of ``namespace``: the scope keys ``{ns:...}`` and the layout key ``{ns}:...``."""
    keys: list[bytes] = []
    for pattern in (f"{{{namespace}:*", f"{{{namespace}}}:*"):
        keys.extend(client.scan_iter(match=pattern, count=1000))
    return keys


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    return REDIS_URL


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"pyncette-test-{uuid.uuid4().hex[:12]}"
    yield name
    with redis.Redis.from_url(redis_url) as client:
        keys = namespace_keys(client, name)
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


@pytest.fixture
async def raw_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away ``redis-server`` on a free loopback port, for flush / restart / ACL tests."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> None:
        self.extra = extra or self.extra
        extra = self.extra
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)  # a child process starting: there is nothing to await
        raise RuntimeError("private redis-server did not start")

    def restart(self) -> None:
        """Stop the server and start it again on the same port, empty (nothing is persisted)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def require_redis_server() -> None:
    """Skip the calling test when ``redis-server`` is not installed; under CI=true fail instead."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed (CI=true: a missing server is a failure)")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def start_private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """Start private servers: ``start_private_redis("--requirepass", "x")``; all stop at teardown."""
    require_redis_server()
    servers: list[PrivateRedis] = []
    with tempfile.TemporaryDirectory() as directory:

        def start(*extra: str) -> PrivateRedis:
            server = PrivateRedis(directory)
            servers.append(server)
            server.start(*extra)
            return server

        try:
            yield start
        finally:
            for server in servers:
                server.stop()


@pytest.fixture
def private_redis(start_private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return start_private_redis()


CLUSTER_SLOTS = 16384


class PrivateCluster:
    """Three cluster-mode ``redis-server`` primaries on free loopback ports, slots split in thirds.

    With the slots spread over three nodes a script whose keys span two hash tags would fail with
    CROSSSLOT or MOVED, so a passing test proves that each script stays inside one slot.
    """

    def __init__(self, directory: str, size: int = 3) -> None:
        self.nodes = [PrivateRedis(directory) for _ in range(size)]
        self.bus_ports = [_free_port() for _ in range(size)]

    @property
    def url(self) -> str:
        """A URL of one node: the cluster client discovers the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node, bus_port in zip(self.nodes, self.bus_ports, strict=True):
            node.start(
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                f"nodes-{node.port}.conf",
                "--cluster-node-timeout",
                "5000",
            )
        clients = [redis.Redis(host="127.0.0.1", port=node.port) for node in self.nodes]
        try:
            share = CLUSTER_SLOTS // len(clients)
            for index, client in enumerate(clients):
                last = CLUSTER_SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
                client.execute_command("CLUSTER ADDSLOTSRANGE", index * share, last)
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port, bus_port)
            deadline = time.monotonic() + 30
            while not all(self._ready(client) for client in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("private Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)  # the nodes gossip over the cluster bus: there is nothing to await
        finally:
            for client in clients:
                client.close()

    def _ready(self, client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER INFO")  # redis-py parses the reply into a dict
        fields = {str(key): str(value) for key, value in info.items()}
        return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(len(self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[PrivateCluster]:
    """A private three-node Redis Cluster shared by a test module; tests use distinct namespaces."""
    require_redis_server()
    with tempfile.TemporaryDirectory() as directory:
        cluster = PrivateCluster(directory)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
"""openssl req options for a fresh unencrypted P-256 key: much faster to make than RSA."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA made by the ``openssl`` CLI: (certificate, key)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *NEW_KEY, "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert), cwd=directory
    )
    return cert, key


def make_server_certificate(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``: (certificate, key)."""
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    _openssl("req", *NEW_KEY, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request), cwd=directory)
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial", "-days", "2",
        "-extfile", str(extensions), "-out", str(cert), cwd=directory,
    )  # fmt: skip
    return cert, key


class TlsRedis:
    """A private ``redis-server`` that accepts TLS only, with its CA and an unrelated one."""

    def __init__(self, server: PrivateRedis, ca_cert: Path, other_ca_cert: Path) -> None:
        self.server = server
        self.ca_cert = ca_cert
        self.other_ca_cert = other_ca_cert

    def url(self, ca_cert: Path) -> str:
        return f"rediss://127.0.0.1:{self.server.port}/0?ssl_ca_certs={ca_cert}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """``redis-server --port 0 --tls-port <free>`` with a server certificate from a CA made in tmp_path."""
    require_redis_server()
    if shutil.which("openssl") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("openssl is not installed (CI=true: a missing tool is a failure)")
        pytest.skip("openssl is not installed")
    ca = make_ca(tmp_path, "test-ca")
    other_ca, _ = make_ca(tmp_path, "other-ca")
    cert, key = make_server_certificate(tmp_path, ca)
    server = PrivateRedis(str(tmp_path))
    try:
        # No plain TCP port; the start-up check connects to the TLS port, which accepts TCP first.
        server.start(
            "--port", "0", "--tls-port", str(server.port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca[0]), "--tls-auth-clients", "no",
        )  # fmt: skip
    except RuntimeError:
        message = "redis-server did not start with TLS options (built without TLS?)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield TlsRedis(server, ca[0], other_ca)
    finally:
        server.stop()
