"""Every distribution builds, its wheel holds only what it owns, and `pyncette` imports its backends
both from wheels and from editable installs, in fresh virtual environments (DESIGN.md section 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.packaging.conftest import InstalledEnv, create_venv, install, run, wheel_of
from tests.packaging.layout import (
    PLANNED_BACKENDS,
    backend_names,
    distribution_folders,
    expected_entry_points,
    find_artifact,
    sdist_problems,
    wheel_problems,
)

pytestmark = pytest.mark.slow

FOLDERS = distribution_folders()
BACKENDS = backend_names()

# Runs inside the fresh environments, with -I so that neither the working directory nor PYTHONPATH
# can put a source tree on sys.path.
PROBE = """
import importlib, importlib.metadata as metadata, json, sys
modules = sys.argv[1:]
for module in modules:
    importlib.import_module(module)
import pyncette
points = metadata.entry_points(group="pyncette")
for point in points:
    point.load()
owners = sorted(
    dist.metadata["Name"]
    for dist in metadata.distributions()
    if any(str(file) == "pyncette/__init__.py" for file in (dist.files or ()))
)
print(json.dumps({
    "entry_points": sorted(point.name for point in points),
    "init_owners": owners,
    "path": list(pyncette.__path__),
}))
"""


def probe(python: Path, cwd: Path, *modules: str) -> dict[str, list[str]]:
    output = run([python, "-I", "-c", PROBE, *modules], cwd=cwd)
    result: dict[str, list[str]] = json.loads(output)
    return result


def test_every_folder_is_discovered() -> None:
    assert "pyncette-core" in FOLDERS
    assert set(BACKENDS) <= set(PLANNED_BACKENDS), f"unplanned backend folders: {set(BACKENDS) - set(PLANNED_BACKENDS)}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_wheel_holds_only_its_own_package(built_dists: Path, folder: str) -> None:
    all_backends = sorted({*PLANNED_BACKENDS, *BACKENDS})
    assert wheel_problems(find_artifact(built_dists, folder, ".whl"), folder, all_backends) == []


@pytest.mark.parametrize("folder", FOLDERS)
def test_sdist_carries_its_sources(built_dists: Path, folder: str) -> None:
    assert sdist_problems(find_artifact(built_dists, folder, ".tar.gz"), folder) == []


@pytest.mark.parametrize("backend", ["memory", *BACKENDS])
def test_backend_imports(installed_env: InstalledEnv, tmp_path: Path, backend: str) -> None:
    """Each backend imports as ``pyncette.<name>`` and is registered under its name."""
    result = probe(installed_env.python, tmp_path, f"pyncette.{backend}")
    assert backend in result["entry_points"]


def test_entry_points_and_init_owner(installed_env: InstalledEnv, tmp_path: Path) -> None:
    result = probe(installed_env.python, tmp_path, *[f"pyncette.{name}" for name in BACKENDS])
    assert result["entry_points"] == expected_entry_points()
    if installed_env.mode == "wheel":
        # Editable installs record no package files; from wheels only pyncette-core owns the file.
        assert result["init_owners"] == ["pyncette-core"]
        assert len(result["path"]) == 1, "wheels share one pyncette/ folder in site-packages"


def test_uninstalling_the_backends_keeps_the_core(built_dists: Path, wheelhouse: Path, tmp_path: Path) -> None:
    """A backend that shipped pyncette/__init__.py would delete it on uninstall; ours leave it alone."""
    python = create_venv(tmp_path / "venv")
    install(python, wheelhouse, *[wheel_of(built_dists, folder) for folder in FOLDERS])
    if BACKENDS:
        run([python, "-m", "pip", "uninstall", "--yes", "--quiet", *[f"pyncette-{name}" for name in BACKENDS]])
    result = probe(python, tmp_path, "pyncette.memory")
    assert result["entry_points"] == ["memory"]
    assert result["init_owners"] == ["pyncette-core"]


DRIVERS = {"sqlite": "aiosqlite", "redis": "redis", "postgres": "asyncpg", "mysql": "aiomysql", "dynamodb": "aiobotocore"}
"""The driver each backend distribution must bring with it (its wheel's dependency)."""
SERVERLESS = {"memory", "sqlite"}
"""Backends that can run a task without a server: the probe runs one tick on them."""

# Runs inside a fresh environment holding only pyncette-core and (unless "memory") one backend.
BACKEND_PROBE = """
import datetime, importlib, json, sys
import anyio
from pyncette import Context, Pyncette
from pyncette.plugins import installed_backends
from pyncette.testing import FakeClock

name, driver, tick = sys.argv[1], sys.argv[2], sys.argv[3] == "tick"
app = Pyncette(backend=name)
backends = installed_backends(app.plugin_manager)
imported_with_app = bool(driver) and driver in sys.modules
if driver:
    importlib.import_module(driver)
exported = getattr(importlib.import_module(f"pyncette.{name}"), f"{name}_repository")
ran = []

@app.task(interval=datetime.timedelta(seconds=1))
async def job(context: Context) -> None:
    ran.append(context.scheduled_at.isoformat())

async def one_tick() -> int:
    clock = FakeClock()
    async with app.create(clock=clock) as ctx:
        clock.advance(1)
        return await ctx.tick()

print(json.dumps({
    "backend": app.backend_name,
    "installed": sorted(backends),
    "distribution": backends[name].distribution,
    "factory_is_exported": app.repository_factory is exported,
    "driver_imported_with_app": imported_with_app,
    "executed": anyio.run(one_tick) if tick else None,
    "ran": ran,
}))
"""


@pytest.mark.parametrize("backend", ["memory", *BACKENDS])
def test_core_and_one_backend_alone_in_a_fresh_environment(
    built_dists: Path, wheelhouse: Path, tmp_path: Path, backend: str
) -> None:
    """With only pyncette-core and this backend's wheel installed, its driver imports, its factory is
    exported, ``Pyncette(backend=name)`` finds it by name (importing the driver then), and a backend that
    needs no server runs a task."""
    folders = ["pyncette-core"] if backend == "memory" else ["pyncette-core", f"pyncette-{backend}"]
    python = create_venv(tmp_path / "venv")
    install(python, wheelhouse, *[wheel_of(built_dists, folder) for folder in folders])
    driver = DRIVERS.get(backend, "")
    assert driver or backend == "memory", f"name the driver of backend {backend!r} in DRIVERS"
    tick = "tick" if backend in SERVERLESS else "no-tick"
    result = json.loads(run([python, "-I", "-c", BACKEND_PROBE, backend, driver, tick], cwd=tmp_path))
    assert result["backend"] == backend
    assert result["installed"] == sorted({"memory", backend}), "only the core and this backend are installed"
    assert result["distribution"] == ("pyncette-core" if backend == "memory" else f"pyncette-{backend}")
    assert result["factory_is_exported"] is True
    assert result["driver_imported_with_app"] is bool(driver)
    if backend in SERVERLESS:
        assert result["executed"] == 1
        assert result["ran"] == ["2030-01-01T00:00:01+00:00"]
