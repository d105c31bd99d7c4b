"""The opt-in JSON log format, in process and through app.main()."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from pyncette.log_format import JsonFormatter, configure_logging
from tests.ops.conftest import ROOT, wait_for


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's capture handlers restored afterwards).

    A context manager, not a fixture: pytest adds its capture handler for each test phase.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers, root.level = saved, level


def test_json_records_carry_structured_fields_and_exceptions() -> None:
    record = logging.LogRecord("pyncette.execution", logging.ERROR, __file__, 1, "task %s failed", ("tick",), None)
    record.task = "tick"
    record.when = object()
    document = json.loads(JsonFormatter().format(record))
    assert document["level"] == "ERROR"
    assert document["logger"] == "pyncette.execution"
    assert document["message"] == "task tick failed"
    assert document["task"] == "tick"
    assert document["when"].startswith("<object object")
    assert document["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    document = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in document["exception"]


def test_configure_logging_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYNCETTE_LOG_FORMAT", "json")
    monkeypatch.setenv("PYNCETTE_LOG_LEVEL", "warning")
    stream = io.StringIO()
    with bare_root() as root:
        configure_logging(stream=stream)
        assert root.level == logging.WARNING
        logging.getLogger("pyncette.test").warning("hello", extra={"instance": "user-1"})
        logging.getLogger("pyncette.test").info("not shown")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["instance"] == "user-1"


def test_configure_logging_leaves_a_configured_root_alone() -> None:
    handler = logging.NullHandler()
    with bare_root() as root:
        root.addHandler(handler)
        configure_logging("DEBUG", "json")
        assert root.handlers == [handler]


def test_an_unknown_format_is_refused() -> None:
    with bare_root(), pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging(log_format="xml")


def test_app_main_logs_json_when_asked(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = textwrap.dedent(
        f"""
        import datetime, pathlib
        from pyncette import Pyncette

        app = Pyncette(backend="memory", poll_interval=0.05)

        @app.task(interval=datetime.timedelta(milliseconds=100))
        async def tick(context):
            pathlib.Path({str(marker)!r}).touch()

        app.main()
        """
    )
    env = {**os.environ, "PYNCETTE_LOG_FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(marker.exists, what="the task to run")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    assert any(r["logger"] == "pyncette.pyncette" and "SIGINT" in r["message"] for r in records), records
