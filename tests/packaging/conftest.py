"""Session-wide builds and virtual environments for the packaging tests.

The expensive steps happen once per test session: every distribution folder is built once
(``built_dists``), and every third-party wheel the installs need is fetched once into a wheelhouse
(``wheelhouse``); the fresh virtual environments then install from those files with ``--no-index``,
so only the wheelhouse touches the package index, through pip's own cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import NamedTuple, Sequence

import pytest

from tests.packaging.layout import ROOT, artifact_prefix, build_requirements, distribution_folders

# Besides the build backend, what hatchling's editable builds may ask for: the wheelhouse must hold
# it, since the editable installs run with build isolation on and the index off.
EDITABLE_BUILD_EXTRAS = ("editables",)


def run(command: Sequence[str | Path], cwd: Path | None = None) -> str:
    """Run ``command``; return its stdout, or fail the test with everything it printed."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_NO_INPUT"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"command failed with exit code {result.returncode}: {' '.join(map(str, command))}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def create_venv(path: Path) -> Path:
    """A fresh virtual environment (venv module, with pip) at ``path``; returns its interpreter."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return venv_python(path)


def wheel_of(dist_dir: Path, folder: str) -> Path:
    (wheel,) = dist_dir.glob(artifact_prefix(folder) + "*.whl")
    return wheel


@pytest.fixture(scope="session")
def built_dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel of every distribution folder, built once, in one directory."""
    outdir = tmp_path_factory.mktemp("dist")
    for folder in distribution_folders():
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", outdir, ROOT / folder])
    return outdir


@pytest.fixture(scope="session")
def wheelhouse(built_dists: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our wheels and every wheel they depend on, plus the build backend, fetched once."""
    house = tmp_path_factory.mktemp("wheelhouse")
    ours = [wheel_of(built_dists, folder) for folder in distribution_folders()]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            house,
            *ours,
            *build_requirements(),
            *EDITABLE_BUILD_EXTRAS,
        ]
    )
    return house


def install(python: Path, wheelhouse: Path, *requirements: str | Path) -> None:
    run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheelhouse, *requirements])


@pytest.fixture(scope="session")
def wheel_env(built_dists: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the built wheels of every distribution installed."""
    python = create_venv(tmp_path_factory.mktemp("wheel-env") / "venv")
    install(python, wheelhouse, *[wheel_of(built_dists, folder) for folder in distribution_folders()])
    return python


@pytest.fixture(scope="session")
def editable_env(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with every distribution folder installed in editable mode."""
    python = create_venv(tmp_path_factory.mktemp("editable-env") / "venv")
    install(python, wheelhouse, *[f"--editable={ROOT / folder}" for folder in distribution_folders()])
    return python


class InstalledEnv(NamedTuple):
    mode: str
    python: Path


@pytest.fixture(params=["wheel", "editable"])
def installed_env(request: pytest.FixtureRequest) -> InstalledEnv:
    """Each install mode in turn: ``wheel_env``, then ``editable_env``."""
    python: Path = request.getfixturevalue(f"{request.param}_env")
    return InstalledEnv(request.param, python)
