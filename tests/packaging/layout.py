"""The monorepo's distributions and the rules their built artifacts follow (DESIGN.md section 1).

Only ``pyncette-core`` ships ``pyncette/__init__.py`` (its first statement extends ``__path__`` the
pkgutil way) and ``pyncette/py.typed``; each backend distribution ships only ``pyncette/<name>/``,
with its own ``py.typed``, and declares itself in the entry-point group ``pyncette`` under its name.

Standard library only: the ``wheels`` nox session runs this module as a script
(``python -m tests.packaging.layout dist``) and tests/packaging imports it.
"""

from __future__ import annotations

import ast
import configparser
import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and build both depend on tomli before Python 3.11
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
CORE = "pyncette-core"
# Every backend the project plans, present or not: the core must not take one of these names.
PLANNED_BACKENDS = ("sqlite", "redis", "postgres", "mysql", "dynamodb")
# The entry point pyncette-core registers for its built-in backend.
CORE_ENTRY_POINTS = ("memory",)
EXTEND_PATH = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'


def distribution_folders(root: Path = ROOT) -> list[str]:
    """The distribution folders: ``pyncette-*`` folders that have a ``pyproject.toml``."""
    return sorted(path.parent.name for path in root.glob("pyncette-*/pyproject.toml"))


def build_requirements(root: Path = ROOT) -> list[str]:
    """The union of the ``[build-system] requires`` of every distribution folder."""
    requirements: set[str] = set()
    for folder in distribution_folders(root):
        with open(root / folder / "pyproject.toml", "rb") as file:
            requirements.update(tomllib.load(file)["build-system"]["requires"])
    return sorted(requirements)


def backend_name(folder: str) -> str | None:
    """``"redis"`` for ``"pyncette-redis"``; ``None`` for pyncette-core."""
    return None if folder == CORE else folder.removeprefix("pyncette-")


def backend_names(root: Path = ROOT) -> list[str]:
    return [name for name in map(backend_name, distribution_folders(root)) if name is not None]


def expected_entry_points(root: Path = ROOT) -> list[str]:
    """The names in the entry-point group ``pyncette`` once every distribution is installed."""
    return sorted([*CORE_ENTRY_POINTS, *backend_names(root)])


def artifact_prefix(folder: str) -> str:
    """The file-name prefix of a distribution's wheel and sdist (``pyncette_redis-``)."""
    return folder.replace("-", "_") + "-"


def find_artifact(dist_dir: Path, folder: str, suffix: str) -> Path:
    """The one ``.whl`` or ``.tar.gz`` of ``folder`` in ``dist_dir``; raises if there is not exactly one."""
    found = sorted(dist_dir.glob(artifact_prefix(folder) + "*" + suffix))
    if len(found) != 1:
        raise LookupError(f"expected one {suffix} of {folder} in {dist_dir}, found {[p.name for p in found]}")
    return found[0]


def wheel_problems(wheel: Path, folder: str, all_backends: list[str]) -> list[str]:
    """Everything wrong with the wheel of ``folder``; empty when it follows the rules."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        problems = []
        if len(dist_info) != 1:
            return [f"{wheel.name}: expected one .dist-info folder, found {sorted(dist_info)}"]
        (info,) = dist_info
        entry_points = _entry_points(archive, f"{info}/entry_points.txt")
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        init = archive.read("pyncette/__init__.py").decode() if "pyncette/__init__.py" in names else None
    payload = [PurePosixPath(name) for name in names if not name.startswith(info + "/")]
    outside = [str(path) for path in payload if path.parts[0] != "pyncette"]
    if outside:
        problems.append(f"{wheel.name}: files outside pyncette/: {outside}")
    name = backend_name(folder)
    if name is None:
        problems += _core_problems(wheel, payload, init, entry_points, all_backends)
    else:
        problems += _backend_problems(wheel, name, payload, entry_points, metadata.get_all("Requires-Dist") or [])
    return problems


def _core_problems(
    wheel: Path, payload: list[PurePosixPath], init: str | None, entry_points: dict[str, str], all_backends: list[str]
) -> list[str]:
    problems = []
    if init is None:
        problems.append(f"{wheel.name}: no pyncette/__init__.py")
    else:
        body = ast.parse(init).body
        if not body or ast.dump(body[0]) != ast.dump(ast.parse(EXTEND_PATH).body[0]):
            problems.append(f"{wheel.name}: the first statement of pyncette/__init__.py is not `{EXTEND_PATH}`")
    if PurePosixPath("pyncette/py.typed") not in payload:
        problems.append(f"{wheel.name}: no pyncette/py.typed")
    taken = sorted({str(path) for path in payload if len(path.parts) > 1 and path.parts[1].removesuffix(".py") in all_backends})
    if taken:
        problems.append(f"{wheel.name}: the core ships modules named like backends: {taken}")
    missing = sorted(set(CORE_ENTRY_POINTS) - set(entry_points))
    if missing:
        problems.append(f"{wheel.name}: entry points {missing} missing from group 'pyncette' (has {entry_points})")
    return problems


def _backend_problems(
    wheel: Path, name: str, payload: list[PurePosixPath], entry_points: dict[str, str], requires: list[str]
) -> list[str]:
    problems = []
    own = PurePosixPath("pyncette", name)
    if PurePosixPath("pyncette/__init__.py") in payload:
        problems.append(f"{wheel.name}: ships pyncette/__init__.py, which only pyncette-core may ship")
    foreign = [str(path) for path in payload if path.parts[0] == "pyncette" and path.parts[:2] != own.parts]
    if foreign:
        problems.append(f"{wheel.name}: files outside {own}/: {foreign}")
    for required in ("__init__.py", "py.typed"):
        if own / required not in payload:
            problems.append(f"{wheel.name}: no {own / required}")
    if list(entry_points) != [name]:
        problems.append(f"{wheel.name}: group 'pyncette' should declare exactly {name!r}, declares {entry_points}")
    elif not entry_points[name].startswith(f"pyncette.{name}"):
        problems.append(f"{wheel.name}: entry point {name} = {entry_points[name]} is not inside pyncette.{name}")
    if not any(_requirement_name(requirement) == "pyncette-core" for requirement in requires):
        problems.append(f"{wheel.name}: does not depend on pyncette-core (Requires-Dist: {requires})")
    return problems


def sdist_problems(sdist: Path, folder: str) -> list[str]:
    """An sdist must carry its pyproject.toml and the sources of its own package."""
    with tarfile.open(sdist) as archive:
        names = [PurePosixPath(name) for name in archive.getnames()]
    relative = [PurePosixPath(*path.parts[1:]) for path in names if len(path.parts) > 1]
    package = PurePosixPath("src/pyncette", backend_name(folder) or "__init__.py")
    problems = []
    for required in (PurePosixPath("pyproject.toml"), package):
        if not any(path == required or required in path.parents for path in relative):
            problems.append(f"{sdist.name}: no {required}")
    return problems


def dist_problems(dist_dir: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Check the sdist and wheel of every distribution folder of ``root`` built into ``dist_dir``."""
    all_backends = sorted({*PLANNED_BACKENDS, *backend_names(root)})
    problems: dict[str, list[str]] = {}
    for folder in distribution_folders(root):
        try:
            problems[folder] = wheel_problems(find_artifact(dist_dir, folder, ".whl"), folder, all_backends)
            problems[folder] += sdist_problems(find_artifact(dist_dir, folder, ".tar.gz"), folder)
        except LookupError as error:
            problems[folder] = [str(error)]
    return problems


def _entry_points(archive: zipfile.ZipFile, name: str) -> dict[str, str]:
    if name not in archive.namelist():
        return {}
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(archive.read(name).decode())
    return dict(parser["pyncette"]) if parser.has_section("pyncette") else {}


def _requirement_name(requirement: str) -> str:
    for index, char in enumerate(requirement):
        if not (char.isalnum() or char in "-_."):
            return requirement[:index].strip().lower().replace("_", "-")
    return requirement.strip().lower().replace("_", "-")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.packaging.layout DIST_DIR", file=sys.stderr)
        return 2
    failed = False
    for folder, problems in dist_problems(Path(argv[0])).items():
        print(f"{folder}: {'FAIL' if problems else 'ok'}")
        for problem in problems:
            print(f"    {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
