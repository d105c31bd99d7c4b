"""A private PostgreSQL server, started by the test on a free port, is restarted and stopped under a live repository.

The shared server on 127.0.0.1:5432 is never touched: this one lives in a temporary directory and
is removed afterwards. It needs the server binaries (``initdb``, ``pg_ctl``); without them the
tests skip, as they cannot be run at all, and say why.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import anyio
import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.postgres import postgres_repository
from tests.backends.postgres.test_postgres_connections import Wakeups

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
LEASE = datetime.timedelta(seconds=30)


def server_binaries() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    """One throw-away cluster; runs as the ``postgres`` user when the tests run as root (initdb refuses root)."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pyncette-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.directory, self.user)
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # Output to a file, never a pipe: the server inherits it and would keep a pipe open forever.
        with open(self.directory / "commands.log", "ab") as log:
            subprocess.run(args, check=True, stdout=log, stderr=log, user=self.user, timeout=120)

    def pg_ctl(self, *args: str) -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def create(self) -> None:
        self._run(str(self.binaries / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        # Every start names the private port and socket directory: the defaults are the shared server's.
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-o", options, "-l", str(self.directory / "server.log"), "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        try:
            self.pg_ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PrivateServer(binaries)
    try:
        server.create()
        yield server
    finally:
        server.remove()


def registration(instance: str) -> Registration:
    return Registration(key=TaskKey("s", instance), spec="{}", data="{}", next_run=T0)


async def test_server_restart_is_survived(private_server: PrivateServer) -> None:
    async with postgres_repository(postgres_url=private_server.url, postgres_pool_size=3) as repository:
        wakeups = Wakeups()
        repository.set_wakeup_callback(wakeups)
        generation = await repository._wait_listening()
        await repository.register_tasks(T0, [registration(f"i{i}") for i in range(5)])
        claimed = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)).claimed

        await anyio.to_thread.run_sync(private_server.restart)

        # The pooled connections were terminated by the shutdown; the next operations reconnect.
        completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, completions) == [True] * 5
        with anyio.fail_after(30):
            await repository._wait_listening(generation)
        await repository.register_tasks(T0, [Registration(key=TaskKey("after", "a"), spec="{}", data="{}", next_run=T0)])
        assert await wakeups.wait_for("after") == [T0]


async def test_operations_fail_while_the_server_is_down_and_work_once_it_is_back(private_server: PrivateServer) -> None:
    async with postgres_repository(postgres_url=private_server.url) as repository:
        await repository.register_tasks(T0, [registration("a")])
        await anyio.to_thread.run_sync(private_server.stop)
        with anyio.fail_after(30), pytest.raises(BackendError, match="claim"):
            await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)
        await anyio.to_thread.run_sync(private_server.start)
        assert len((await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)).claimed) == 1
