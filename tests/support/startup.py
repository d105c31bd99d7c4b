"""Start a tiny app with a bad configuration in a subprocess and check what the user sees.

A start-up failure must reach the user as one error line naming the option: exit status 1, no
traceback, no driver module in the output, no secret. The app is started with ``app.main()``
(``python app.py``) or with ``pyncette run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

APP_SOURCE = """\
import json
import os

from pyncette import Context, Pyncette

app = Pyncette(**json.loads(os.environ["STARTUP_TEST_OPTIONS"]))


@app.task(interval=60)
async def tick(context: Context) -> None:
    pass


if __name__ == "__main__":
    app.main()
"""

DRIVER_MODULES = ("asyncpg", "aiomysql", "pymysql", "redis.exceptions", "botocore", "aiosqlite", "sqlite3")
"""Names that show a driver's frames or exception classes leaked into the output."""

WAYS = ("main", "cli")
"""``main``: ``python app.py`` calling ``app.main()``; ``cli``: ``python -m pyncette run app:app``."""


def start_app(
    directory: Path, options: dict[str, Any], *, way: str = "main", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the tiny app with backend ``options`` until it exits (it must, the configuration is bad)."""
    script = directory / "startup_app.py"
    script.write_text(APP_SOURCE)
    command = [sys.executable, str(script)]
    if way == "cli":
        command = [sys.executable, "-m", "pyncette", "run", "startup_app:app", "--app-dir", str(directory)]
    environment = {
        **os.environ,
        **(env or {}),
        "STARTUP_TEST_OPTIONS": json.dumps(options),
        # Drivers may log at INFO (botocore names where it found credentials): only warnings and errors count here.
        "PYNCETTE_LOG_LEVEL": "WARNING",
        "PYNCETTE_LOG_FORMAT": "text",
    }
    return subprocess.run(command, cwd=directory, env=environment, capture_output=True, text=True, timeout=timeout)


def assert_one_clean_error(result: subprocess.CompletedProcess[str], *, option: str, secret: str | None = None) -> str:
    """Check the run failed with exactly one error line naming ``option``; return that line."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    (line,) = lines
    assert "ERROR" in line and "cannot start" in line, output
    assert option in line, output
    assert "Traceback" not in output
    for module in DRIVER_MODULES:
        assert module not in output, f"{module} in {output}"
    if secret is not None:
        assert secret not in output
    return line
