"""Every development task of the monorepo is a nox session; ``nox -l`` lists them.

Plain ``nox`` runs the default sessions: ``tests``, ``tests-core``, ``lint``, ``typecheck``, ``wheels`` and
``docs``. The
distributions are discovered, not listed: a ``pyncette-*`` folder counts once it has a
``pyproject.toml``, and each backend folder gets its own ``tests-<name>`` and ``bench-<name>`` session.
See docs/development.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox depends on tomli before Python 3.11
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

ROOT = Path(__file__).resolve().parent
CORE = "pyncette-core"
DISTRIBUTIONS = sorted(path.parent.name for path in ROOT.glob("pyncette-*/pyproject.toml"))
BACKENDS = [folder.removeprefix("pyncette-") for folder in DISTRIBUTIONS if folder != CORE]
# Backends whose tests need a loopback server that .ci/services can start.
SERVER_BACKENDS = {"postgres", "mysql", "redis"}
TEST_REQUIREMENTS = "tests/requirements.txt"
# Linters are pinned to a minor release: a new release may add rules or change formatting, and that
# must arrive as a deliberate change, not as a red CI run.
RUFF = "ruff~=0.17.6"
MYPY = "mypy~=2.4.1"
CI = os.environ.get("CI", "").lower() == "true"
# Seconds one test may take (pytest-timeout) before it fails with its stack: far above the slowest
# test (the packaging fixtures, about a minute with a cold pip cache; a multi-process drain on moto,
# a few minutes), yet low enough that a hung test cannot stall the whole run.
PYTEST_ENV = {"PYTEST_TIMEOUT": os.environ.get("PYTEST_TIMEOUT", "600")}

# tests-core (about a minute) proves that the core's tests pass with no backend distribution installed.
nox.options.sessions = ["tests", "tests-core", "lint", "typecheck", "wheels", "docs"]
nox.options.error_on_external_run = True


def ensure_services(session: nox.Session) -> None:
    """Start the loopback servers that are down. Under CI a server that stays down fails at once;
    elsewhere the run goes on and the tests that need it are skipped with the reason printed."""
    session.run(str(ROOT / ".ci" / "services"), external=True, success_codes=[0] if CI else [0, 1])


def build_requirements(folders: list[str]) -> list[str]:
    """The union of the ``[build-system] requires`` of ``folders``."""
    requirements: set[str] = {"build"}
    for folder in folders:
        with open(ROOT / folder / "pyproject.toml", "rb") as file:
            requirements.update(tomllib.load(file)["build-system"]["requires"])
    return sorted(requirements)


def build(session: nox.Session, folders: list[str], outdir: Path, *, sdist: bool = True) -> list[Path]:
    """Build ``folders`` into an emptied ``outdir``; return the wheels in the order of ``folders``.

    Builds without isolation, against the build backend the pyproject files ask for, installed once
    into the session: one resolution instead of two isolated environments per distribution. With
    ``sdist`` the wheel is built from the sdist, which also proves that the sdist is complete.
    """
    session.install(*build_requirements(folders))
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    wheels = []
    for folder in folders:
        targets = [] if sdist else ["--wheel"]
        session.run("python", "-m", "build", "--no-isolation", *targets, "--outdir", str(outdir), str(ROOT / folder), silent=True)
        (wheel,) = outdir.glob(folder.replace("-", "_") + "-*.whl")
        wheels.append(wheel)
    return wheels


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, against editable installs of every distribution, in one environment."""
    ensure_services(session)
    editables = [f"--editable={ROOT / folder}" for folder in DISTRIBUTIONS]
    session.install(*editables, "-r", TEST_REQUIREMENTS)
    session.run("pytest", *(session.posargs or ["tests"]), env=PYTEST_ENV)


def backend_tests(session: nox.Session, backend: str) -> None:
    """Run one backend's tests against the built wheels of pyncette-core and that backend."""
    folders = [CORE] if backend == "memory" else [CORE, f"pyncette-{backend}"]
    if backend in SERVER_BACKENDS:
        ensure_services(session)
    wheels = build(session, folders, Path(session.create_tmp()) / "wheels", sdist=False)
    session.install(*map(str, wheels), "-r", TEST_REQUIREMENTS)
    if backend == "memory":
        # tests/core may not exist yet; the memory backend's tests always do.
        paths = [path for path in ("tests/core", "tests/backends/memory") if (ROOT / path).is_dir()]
    else:
        paths = [f"tests/backends/{backend}"]  # missing: pytest fails, as it should
    session.run("pytest", *paths, *session.posargs, env=PYTEST_ENV)


@nox.session(name="tests-core", tags=["tests"])
def tests_core(session: nox.Session) -> None:
    """tests/core and tests/backends/memory against the built wheel of pyncette-core."""
    backend_tests(session, "memory")


def bench(session: nox.Session, backend: str) -> None:
    folders = [CORE] if backend == "memory" else [CORE, f"pyncette-{backend}"]
    if backend in SERVER_BACKENDS:
        ensure_services(session)
    wheels = build(session, folders, Path(session.create_tmp()) / "wheels", sdist=False)
    requirements = ["-r", "benchmarks/requirements.txt"] if (ROOT / "benchmarks" / "requirements.txt").is_file() else []
    session.install(*map(str, wheels), *requirements)
    session.run("python", "benchmarks/run.py", "--backend", backend, *session.posargs)


def define_backend_session(kind: str, backend: str) -> None:
    def session_function(session: nox.Session) -> None:
        (backend_tests if kind == "tests" else bench)(session, backend)

    if kind == "tests":
        session_function.__doc__ = f"tests/backends/{backend} against the built wheels of pyncette-core and pyncette-{backend}."
    else:
        session_function.__doc__ = f"Benchmarks of pyncette-{backend}."
    nox.session(name=f"{kind}-{backend}", tags=[kind])(session_function)


for _backend in BACKENDS:
    define_backend_session("tests", _backend)


@nox.session(name="bench-memory", tags=["bench"])
def bench_memory(session: nox.Session) -> None:
    """Benchmarks of the in-memory backend of pyncette-core."""
    bench(session, "memory")


for _backend in BACKENDS:
    define_backend_session("bench", _backend)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install(RUFF)
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the installed (not editable) pyncette package, then on the typed test helpers."""
    wheels = build(session, DISTRIBUTIONS, Path(session.create_tmp()) / "wheels", sdist=False)
    session.install(*map(str, wheels), MYPY, "-r", TEST_REQUIREMENTS, "nox")
    # The repository root holds no `pyncette` folder, so mypy finds only the installed package.
    installed = session.run("python", "-c", "import pyncette, os; print(os.path.dirname(pyncette.__path__[0]))", silent=True)
    session.log(f"checking pyncette as installed in {str(installed).strip()}")
    config = str(ROOT / "pyproject.toml")
    session.run("mypy", "--config-file", config, "--strict", "-p", "pyncette")
    session.run("mypy", "--config-file", config, "--strict", "tests/support", "tests/packaging", "noxfile.py")


# The documentation site's tools; only the docs session installs them (mkdocstrings reads the
# sources statically, so the distributions are not installed).
DOCS_REQUIREMENTS = ["mkdocs~=1.6.1", "mkdocs-material~=9.8", "mkdocstrings~=1.0", "mkdocstrings-python~=2.0"]


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs.yml) with --strict: a broken link or API reference fails."""
    session.install(*DOCS_REQUIREMENTS)
    site = Path(session.create_tmp()) / "site"
    args = session.posargs or ["--site-dir", str(site)]
    session.run("mkdocs", "build", "--strict", *args, env={"NO_MKDOCS_2_WARNING": "1"})
    if not session.posargs:
        session.log(f"site built in {site}")


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every distribution's sdist and wheel into dist/ and check what each wheel holds."""
    outdir = ROOT / "dist"
    build(session, DISTRIBUTIONS, outdir)
    session.run("python", "-m", "tests.packaging.layout", str(outdir))
