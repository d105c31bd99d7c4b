from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pymysql  # type: ignore[import-untyped]
import pytest

from tests.support.servers import MYSQL, require_server

HOST = str(MYSQL["host"])
PORT = int(str(MYSQL["port"]))


@contextlib.contextmanager
def admin_connection(**overrides: Any) -> Iterator[Any]:
    """A plain blocking connection for test set-up and inspection, never used by the code under test."""
    options = {**MYSQL, **overrides}
    conn = pymysql.connect(
        host=options["host"],
        port=options["port"],
        user=options["user"],
        password=options["password"],
        database=options["database"],
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def admin_query(sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with admin_connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


@pytest.fixture
def mysql_options() -> dict[str, Any]:
    require_server("MySQL/MariaDB", HOST, PORT)
    return {
        "mysql_host": HOST,
        "mysql_port": PORT,
        "mysql_user": MYSQL["user"],
        "mysql_password": MYSQL["password"],
        "mysql_database": MYSQL["database"],
    }


@pytest.fixture
def table_name(mysql_options: dict[str, Any]) -> Iterator[str]:
    """A fresh table name per test; the table is dropped afterwards if the test created it."""
    name = f"pyncette_test_{uuid.uuid4().hex[:12]}"
    yield name
    admin_query(f"DROP TABLE IF EXISTS `{name}`")


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def _wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _accepts_queries(port: int) -> bool:
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=1).close()
        return True
    except pymysql.err.MySQLError:
        return False


class PrivateServer:
    def __init__(self, server: str, datadir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.server = server
        self.datadir = datadir
        self.extra_args = extra_args
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.server,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.datadir}/mysqld.sock",
                f"--pid-file={self.datadir}/mysqld.pid",
                "--innodb-buffer-pool-size=16M",
                "--skip-log-bin",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: _accepts_queries(self.port), "the private server to accept connections")

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def _private_instance(tmp_path_factory: pytest.TempPathFactory, extra_args: tuple[str, ...] = ()) -> Iterator[PrivateServer]:
    """Install a fresh data directory, start a server on it with ``extra_args``, stop it afterwards.

    The shared server is never stopped or reconfigured: this needs the server binaries
    (``mariadbd`` or ``mysqld``) of the machine running the shared one.
    """
    server = _binary("mariadbd", "mysqld")
    installer = _binary("mariadb-install-db", "mysql_install_db")
    if server is None or installer is None:
        message = "no MariaDB/MySQL server binaries to start a private instance"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a missing server is a failure, not a skip)")
        pytest.skip(message)
    datadir = tmp_path_factory.mktemp("mariadb") / "data"
    subprocess.run(
        [installer, "--no-defaults", f"--datadir={datadir}", "--user=root", "--auth-root-authentication-method=normal"],
        check=True,
        capture_output=True,
    )
    instance = PrivateServer(server, datadir, extra_args)
    instance.start()
    conn = pymysql.connect(host="127.0.0.1", port=instance.port, user="root", password="", autocommit=True)
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS pyncette")
    conn.close()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    """A server of our own on a free port, for tests that crash it or change users and grants."""
    with _private_instance(tmp_path_factory) as instance:
        yield instance


class Certificates:
    """A certificate authority and a server certificate it signed for 127.0.0.1 and localhost, made with ``openssl``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.server_certificate = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.other_ca = directory / "other-ca.pem"
        openssl = shutil.which("openssl")
        if openssl is None:
            message = "the openssl command is needed to make test certificates"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{message} (CI=true: a missing tool is a failure, not a skip)")
            pytest.skip(message)

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

        for name in ("ca", "other-ca"):
            run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=pyncette test {name}",
                "-keyout", f"{name}.key", "-out", f"{name}.pem")  # fmt: skip
        (directory / "server.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "server.ext", "-out", "server.pem")  # fmt: skip


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="session")
def private_tls_server(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[PrivateServer]:
    """A private server that offers TLS with a certificate signed by ``certificates.ca``."""
    tls = (
        f"--ssl-ca={certificates.ca}",
        f"--ssl-cert={certificates.server_certificate}",
        f"--ssl-key={certificates.server_key}",
    )
    with _private_instance(tmp_path_factory, tls) as instance:
        yield instance
