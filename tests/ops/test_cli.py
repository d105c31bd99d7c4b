"""The ``pyncette`` command, through click's CliRunner and as a subprocess."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from pyncette.cli import backend_overrides, cli, configure_backend, dst_notes, load_app, parse_value
from tests.ops.conftest import ROOT, wait_for
from tests.ops.sample_app import make_app

pytest.importorskip("pyncette.sqlite")
pytestmark = pytest.mark.usefixtures("clean_env")
APP = "tests.ops.sample_app:make_app"
UTC = datetime.timezone.utc


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


def seed(database: str, instances: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Register the sample app's static tasks and the given dynamic instances in ``database``."""
    app = make_app()
    configure_backend(app, "sqlite", {"sqlite_database": database})

    async def register() -> None:
        async with app.create() as context:
            for task, name, options in instances:
                await context.schedule_task(task, name, **options)

    anyio.run(register)


HOURLY = {"interval": datetime.timedelta(hours=1)}


# loading and configuration


def test_load_app_accepts_an_app_or_a_factory() -> None:
    assert load_app("tests.ops.sample_app:app").backend_name == "memory"
    assert load_app(APP) is not load_app(APP)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("tests.ops.no_such_module:app", "cannot import module 'tests.ops.no_such_module'"),
        ("tests.ops.sample_app:nothing", "has no attribute 'nothing'"),
        ("tests.ops.sample_app:RUNS", "is list, not a Pyncette app"),
    ],
)
def test_a_bad_app_reference_is_a_usage_error(reference: str, message: str) -> None:
    result = invoke("check", reference)
    assert result.exit_code == 2
    assert message in result.output


def test_parse_value() -> None:
    assert parse_value("true") is True
    assert parse_value("Off") is False
    assert parse_value("5") == 5
    assert parse_value("2.5") == 2.5
    assert parse_value("redis://host:6379/0") == "redis://host:6379/0"


def test_backend_options_come_from_the_environment_and_flags_win() -> None:
    app = make_app()
    environ = {"PYNCETTE_SQLITE_DATABASE": "env.db", "PYNCETTE_SQLITE_WAL": "false", "PYNCETTE_UNRELATED": "x"}
    backend, options = backend_overrides(app, "sqlite", ("sqlite_database=flag.db",), environ)
    assert backend == "sqlite"
    assert options == {"sqlite_database": "flag.db", "sqlite_wal": False}


def test_configure_backend_switches_the_backend_or_infers_it_from_options() -> None:
    app = make_app()
    configure_backend(app, None, {"sqlite_database": "x.db"})
    assert app.backend_name == "sqlite"
    assert app.backend_options == {"sqlite_database": "x.db"}
    configure_backend(app, "memory", {})
    assert app.backend_name == "memory"
    assert app.backend_options == {}


def test_an_unknown_backend_fails_with_the_installed_ones(database: str) -> None:
    result = invoke("check", APP, "--backend", "cassandra")
    assert result.exit_code == 1
    assert "unknown backend 'cassandra'" in result.output
    assert "memory" in result.output


def test_an_option_of_another_backend_is_refused() -> None:
    result = invoke("check", APP, "--backend", "memory", "-o", "sqlite_database=x.db")
    assert result.exit_code == 1
    assert "does not accept option(s) 'sqlite_database'" in result.output


# backends


def test_backends_lists_plugins_with_distribution_version_and_options() -> None:
    result = invoke("backends", "--json")
    assert result.exit_code == 0
    found = {entry["name"]: entry for entry in json.loads(result.output)}
    import importlib.metadata

    assert found["memory"]["distribution"] == "pyncette-core"
    assert found["memory"]["version"] == importlib.metadata.version("pyncette-core")
    assert "sqlite_database" in found["sqlite"]["options"]
    text = invoke("backends").output
    assert "sqlite  (pyncette-sqlite " in text
    assert "    sqlite_database: " in text


# preview


def test_preview_prints_the_next_runs_in_the_zone() -> None:
    result = invoke("preview", "0 12 * * *", "--tz", "Europe/Dublin", "-n", "3", "--after", "2030-01-01T00:00")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("cron '0 12 * * *' in Europe/Dublin")
    assert [line.split()[0] for line in lines[1:]] == [
        "2030-01-01T12:00:00+00:00",
        "2030-01-02T12:00:00+00:00",
        "2030-01-03T12:00:00+00:00",
    ]


def test_preview_notes_a_spring_forward_and_a_fold() -> None:
    spring = invoke("preview", "30 2 * * *", "--tz", "America/New_York", "-n", "3", "--after", "2030-03-09T00:00")
    assert spring.exit_code == 0
    lines = spring.output.splitlines()[1:]
    # 02:30 does not exist on 2030-03-10 in New York: it runs when the gap ends, at 03:00 EDT.
    assert lines[1].startswith("2030-03-10T03:00:00-04:00")
    assert "clocks went forward since the previous run (UTC-05:00 -> UTC-04:00)" in lines[1]
    assert "#" not in lines[0] and "#" not in lines[2]
    assert spring.output.splitlines()[0] == "cron '30 2 * * *' in America/New_York, dst gap transition, fold first"
    shifted = invoke(
        "preview", "30 2 * * *", "--tz", "America/New_York", "-n", "2", "--after", "2030-03-09T00:00", "--dst-gap", "shift"
    )
    assert shifted.exit_code == 0
    assert shifted.output.splitlines()[0] == "cron '30 2 * * *' in America/New_York, dst gap shift, fold first"
    assert shifted.output.splitlines()[2].startswith("2030-03-10T03:30:00-04:00")
    fold = invoke(
        "preview", "30 1 * * *", "--tz", "America/New_York", "-n", "3", "--after", "2030-11-02T12:00", "--dst-fold", "both"
    )
    lines = fold.output.splitlines()[1:]
    assert lines[0].startswith("2030-11-03T01:30:00-04:00") and "this is the first occurrence" in lines[0]
    assert lines[1].startswith("2030-11-03T01:30:00-05:00") and "this is the second occurrence" in lines[1]
    assert "clocks went back" in lines[1]


def test_dst_notes_are_empty_away_from_transitions() -> None:
    first = datetime.datetime(2030, 6, 1, 12, tzinfo=UTC)
    assert dst_notes(first, first + datetime.timedelta(days=1)) == []


def test_preview_rejects_a_bad_expression_or_zone() -> None:
    result = invoke("preview", "61 * * * *")
    assert result.exit_code == 1 and "61 * * * *" in result.output
    result = invoke("preview", "0 12 * * *", "--tz", "Europe/Dubln")
    assert result.exit_code == 1 and "Europe/Dubln" in result.output


# check


def test_check_lists_tasks_and_reaches_the_store(database: str) -> None:
    result = invoke("check", APP, "--backend", "sqlite", "-o", f"sqlite_database={database}")
    assert result.exit_code == 0, result.output
    assert "backend sqlite" in result.output
    assert "task daily: cron '0 12 * * *' in Europe/Dublin" in result.output
    assert "partitioned dynamic task spread" in result.output
    assert result.output.rstrip().endswith("store reachable: backend sqlite")


def test_check_fails_clearly_when_the_store_is_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "store.db"
    result = invoke("check", APP, env={"PYNCETTE_BACKEND": "sqlite", "PYNCETTE_SQLITE_DATABASE": str(missing)})
    assert result.exit_code == 1
    assert f"Error: store not reachable: backend sqlite: ConfigurationError: sqlite_database='{missing}'" in result.output
    assert "ExceptionGroup" not in result.output


def test_check_fails_on_an_unreachable_redis() -> None:
    pytest.importorskip("pyncette.redis")
    from tests.ops.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}"
    result = invoke("check", APP, "--backend", "redis", "-o", f"redis_url={url}", "-o", "redis_timeout=1", "--timeout", "5")
    assert result.exit_code == 1
    assert "store not reachable: backend redis" in result.output


# tasks


def list_json(database: str, *args: str) -> list[dict[str, Any]]:
    result = invoke("tasks", "list", APP, "-o", f"sqlite_database={database}", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tasks_list_pages_through_every_instance(database: str) -> None:
    seed(database, [("remind", f"user-{i:02d}", HOURLY) for i in range(7)])
    listed = list_json(database, "remind", "--page-size", "2")
    assert [entry["instance"] for entry in listed] == [f"user-{i:02d}" for i in range(7)]
    assert all(entry["paused"] is False and entry["schedule"] == "every 1h" for entry in listed)
    assert [e["instance"] for e in list_json(database, "remind", "--page-size", "2", "--limit", "3")] == [
        "user-00",
        "user-01",
        "user-02",
    ]
    text = invoke("tasks", "list", APP, "-o", f"sqlite_database={database}", "remind")
    assert text.stdout.splitlines()[0].startswith("user-00\tscheduled\tnext ")
    assert "7 instance(s)" in text.stderr


def test_tasks_list_reports_progress_on_long_listings(database: str) -> None:
    seed(database, [("remind", f"user-{i:04d}", HOURLY) for i in range(1_050)])
    result = invoke("tasks", "list", APP, "-o", f"sqlite_database={database}", "remind", "--page-size", "100")
    assert len(result.stdout.splitlines()) == 1_050
    assert "... 1000 instances so far" in result.stderr


def test_tasks_list_covers_every_partition_and_static_tasks(database: str) -> None:
    seed(database, [("spread", f"p-{i}", HOURLY) for i in range(10)])
    assert sorted(e["instance"] for e in list_json(database, "spread", "--page-size", "3")) == [f"p-{i}" for i in range(10)]
    (daily,) = list_json(database, "daily")
    assert daily["task"] == "daily" and daily["instance"] is None


def test_tasks_show_pause_resume_run_now_unschedule(database: str) -> None:
    seed(database, [("remind", "user-1", {**HOURLY, "email": "a@example.com"})])
    target = ("-o", f"sqlite_database={database}", "remind", "user-1")

    def show() -> dict[str, Any]:
        result = invoke("tasks", "show", APP, *target)
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.output)
        return document

    shown = show()
    assert shown["args"] == {"email": "a@example.com"}
    assert shown["state"] == "scheduled" and len(shown["next_runs"]) == 5
    assert invoke("tasks", "pause", APP, *target).output.strip() == "paused remind/user-1"
    assert show()["state"] == "paused"
    assert invoke("tasks", "resume", APP, *target).output.strip() == "resumed remind/user-1"
    assert show()["state"] == "scheduled"
    before = datetime.datetime.now(UTC)
    result = invoke("tasks", "run-now", APP, *target)
    assert result.exit_code == 0 and "remind/user-1 is due now" in result.output
    after = show()
    assert after["state"] == "due"
    assert datetime.datetime.fromisoformat(after["next_run"]) <= datetime.datetime.now(UTC)
    assert datetime.datetime.fromisoformat(after["next_run"]) >= before - datetime.timedelta(seconds=1)
    assert invoke("tasks", "unschedule", APP, *target).output.strip() == "unscheduled remind/user-1"
    missing = invoke("tasks", "show", APP, *target)
    assert missing.exit_code == 1 and "remind/user-1 is not in the store" in missing.output
    assert invoke("tasks", "unschedule", APP, *target).output.strip() == "remind/user-1 was not scheduled"


def test_tasks_commands_check_the_task_and_instance(database: str) -> None:
    seed(database, [])
    store = ("-o", f"sqlite_database={database}")
    result = invoke("tasks", "show", APP, *store, "nope")
    assert result.exit_code == 2 and "the app defines no task 'nope'; its tasks: daily, remind, spread" in result.output
    result = invoke("tasks", "pause", APP, *store, "remind")
    assert result.exit_code == 2 and "dynamic task: name the INSTANCE" in result.output
    result = invoke("tasks", "pause", APP, *store, "remind", "ghost")
    assert result.exit_code == 1 and "has no instance 'ghost'" in result.output
    assert invoke("tasks", "pause", APP, *store, "daily").output.strip() == "paused daily"
    assert json.loads(invoke("tasks", "show", APP, *store, "daily").output)["state"] == "paused"


# as a subprocess


def pyncette(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyncette", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_console_script_is_installed() -> None:
    import importlib.metadata

    (script,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "pyncette"]
    assert script.value == "pyncette.cli:main"


def test_subprocess_preview_and_check(database: str) -> None:
    result = pyncette("preview", "@daily", "-n", "2", "--after", "2030-01-01T00:00:00+00:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("2030-01-02T00:00:00+00:00")
    env = {**os.environ, "PYNCETTE_BACKEND": "sqlite", "PYNCETTE_SQLITE_DATABASE": database}
    result = pyncette("check", APP, env=env)
    assert result.returncode == 0, result.stderr
    env["PYNCETTE_SQLITE_DATABASE"] = str(Path(database).parent / "missing" / "x.db")
    result = pyncette("check", APP, env=env)
    assert result.returncode == 1
    assert "store not reachable" in result.stderr


def test_subprocess_run_executes_tasks_logs_json_and_stops_on_sigterm(database: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    past = datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)
    seed(database, [("remind", "user-7", {"execute_at": past})])
    env = {**os.environ, "SAMPLE_APP_MARKER": str(marker), "PYNCETTE_LOG_FORMAT": "json", "PYNCETTE_LOG_LEVEL": "DEBUG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pyncette", "run", APP, "--backend", "sqlite", "-o", f"sqlite_database={database}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: marker.exists() and "user-7" in marker.read_text(), what="the task to run")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert records, "no log records"
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    assert any("SIGTERM" in record["message"] for record in records)
