"""Every program in examples/ is exercised: driven by the controllable clock, or run as a process."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

from pyncette.testing import FakeClock, run_until
from tests.support.multiprocess import wait_for
from tests.support.servers import REDIS_URL, require_server

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("plugins", ["installed", "core only"])
async def test_in_memory_example_says_hello_every_minute(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, plugins: str
) -> None:
    """The 1.x in-memory Quick Start, run unchanged: ``Pyncette()`` on the default backend, a task every minute.

    The default is SQLite in memory when pyncette-sqlite is installed, else the memory backend; with
    plugin autoloading off the program runs as on an install of pyncette-core alone.
    """
    if plugins == "core only":
        monkeypatch.setenv("PYNCETTE_DISABLE_PLUGIN_AUTOLOAD", "1")
    example = load("in_memory")
    installed = {ep.name for ep in importlib.metadata.entry_points(group="pyncette")}
    assert example.app.backend_name == ("sqlite" if plugins == "installed" and "sqlite" in installed else "memory")
    clock = FakeClock(START)
    async with example.app.create(clock=clock) as context:
        await run_until(context, START + datetime.timedelta(minutes=3))
    assert capsys.readouterr().out.splitlines() == ["Hello, world!"] * 3


async def test_redis_quickstart_runs_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    require_server("Redis", "127.0.0.1", 6379)
    pytest.importorskip("pyncette.redis")
    import redis

    example = load("redis_quickstart")
    clock = FakeClock(datetime.datetime.now(datetime.timezone.utc))
    try:
        async with example.app.create(clock=clock) as context:
            await run_until(context, clock.now() + datetime.timedelta(seconds=60))
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match="*pyncette*foo*"):
            client.delete(key)
        client.close()
    assert capsys.readouterr().out.splitlines() == ["This will run every 10 seconds"] * 6


async def test_reliability_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("reliability")
    clock = FakeClock(START)
    async with example.app.create(clock=clock) as context:
        await example.setup(context)
        listing = await context.list_tasks(example.daily_digest, limit=2000)
        assert len(listing.tasks) == 1000
        await run_until(context, START + datetime.timedelta(days=1, hours=3))
        report = await context.get_task(example.nightly_report)
        assert report is not None and report.status is not None
    lines = capsys.readouterr().out.splitlines()
    digests = [line for line in lines if line.startswith("digest for")]
    assert len(digests) == 2000, "two midnights, every user once each"
    assert len(set(digests)) == 1000
    assert len([line for line in lines if line.startswith("report for")]) == 2


def _start_quickstart(database: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "QUICKSTART_DATABASE": str(database), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(stream: IO[str], needle: str, seen: list[str], timeout: float) -> None:
    def found() -> bool:
        line = stream.readline()
        seen.append(line)
        return needle in line

    wait_for(found, timeout=timeout, what=f"{needle!r} in the output", interval=0)


def test_quickstart_persists_across_restarts_and_stops_gracefully(tmp_path: Path) -> None:
    pytest.importorskip("pyncette.sqlite")
    database = tmp_path / "quickstart.db"
    first = _start_quickstart(database)
    seen: list[str] = []
    assert first.stdout is not None
    _read_until(first.stdout, "static task, slot", seen, timeout=30)
    first.send_signal(signal.SIGINT)
    rest, _ = first.communicate(timeout=30)
    assert first.returncode == 0, rest
    assert "finishing running tasks" in rest

    second = _start_quickstart(database)
    assert second.stdout is not None
    _read_until(second.stdout, "found stored instance 'alice'", seen, timeout=30)
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=30)
    assert second.returncode == 0


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    program = tmp_path / "slow.py"
    program.write_text(
        "import anyio\n"
        "from pyncette import Pyncette\n"
        "app = Pyncette(backend='memory', shutdown_grace=120)\n"
        "@app.task(schedule='* * * * * *')\n"
        "async def slow(context):\n"
        "    print('started', flush=True)\n"
        "    await anyio.sleep(600)\n"
        "app.main()\n"
    )
    process = subprocess.Popen([sys.executable, str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    _read_until(process.stdout, "started", [], timeout=30)
    process.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=1)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=10)
    assert process.returncode == 128 + signal.SIGINT
    assert "exiting at once" in errors
