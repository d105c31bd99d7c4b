"""A private MariaDB/MySQL server, started by the test on a free port, crashes and restarts under the backend.

The shared server on 3306 is never touched: this test installs its own data directory, so it needs
the server binaries (``mariadbd`` or ``mysqld``) that the machine running the shared server has.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pymysql  # type: ignore[import-untyped]
import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.mysql import mysql_repository

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


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
    def __init__(self, server: str, datadir: Path) -> None:
        self.server = server
        self.datadir = datadir
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


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
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
    instance = PrivateServer(server, datadir)
    instance.start()
    conn = pymysql.connect(host="127.0.0.1", port=instance.port, user="root", password="", autocommit=True)
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS pyncette")
    conn.close()
    try:
        yield instance
    finally:
        instance.stop()


async def test_work_resumes_after_the_server_crashes_and_restarts(private_server: PrivateServer) -> None:
    options: dict[str, Any] = {
        "mysql_host": "127.0.0.1",
        "mysql_port": private_server.port,
        "mysql_user": "root",
        "mysql_database": "pyncette",
        "mysql_table_name": "restart_test",
        "mysql_pool_size": 3,
    }
    async with mysql_repository(**options) as repository:
        await repository.register_tasks(
            T0, [Registration(key=TaskKey("r", f"i{i}"), spec="{}", data="{}", next_run=T0) for i in range(10)]
        )
        first = (await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=4)).claimed
        done = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + 60 * SECOND, data='{"ran": 1}') for c in first]
        assert await repository.complete_tasks(T0, done) == [True] * 4

        private_server.crash()
        with pytest.raises(BackendError):
            await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=10)
        private_server.start()

        # the same repository and pool carry on: committed work survived, due work is still due
        rest = (await repository.claim_due(T0, "r", owner="w", lease_duration=LEASE, limit=10)).claimed
        assert sorted(c.state.key.instance for c in rest) == [f"i{i}" for i in range(4, 10)]
        for claimed in first:
            state = await repository.get_task(claimed.state.key)
            assert state is not None
            assert (state.next_run, state.data, state.locked_by) == (T0 + 60 * SECOND, '{"ran": 1}', None)
        done = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in rest]
        assert await repository.complete_tasks(T0, done) == [True] * 6
        assert len((await repository.list_tasks("r", limit=100)).states) == 4
