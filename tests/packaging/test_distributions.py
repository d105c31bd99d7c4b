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
