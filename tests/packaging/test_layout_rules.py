"""The wheel rules of tests/packaging/layout.py catch the mistakes they exist for (synthetic wheels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.packaging.layout import EXTEND_PATH, PLANNED_BACKENDS, wheel_problems

BACKENDS = list(PLANNED_BACKENDS)
CORE_INIT = f'{EXTEND_PATH}\n"""Pyncette."""\n'


def make_wheel(
    directory: Path, distribution: str, files: dict[str, str], entry_points: dict[str, str], requires: list[str]
) -> Path:
    info = f"{distribution.replace('-', '_')}-1.0.dist-info"
    path = directory / f"{distribution.replace('-', '_')}-1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    points = "[pyncette]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/entry_points.txt", points)
        archive.writestr(f"{info}/RECORD", "")
    return path


def core_wheel(directory: Path, files: dict[str, str] | None = None) -> Path:
    contents = {"pyncette/__init__.py": CORE_INIT, "pyncette/py.typed": "", "pyncette/memory.py": ""}
    contents.update(files or {})
    return make_wheel(directory, "pyncette-core", contents, {"memory": "pyncette.memory"}, ["anyio"])


def redis_wheel(directory: Path, files: dict[str, str] | None = None, requires: list[str] | None = None) -> Path:
    contents = {"pyncette/redis/__init__.py": "", "pyncette/redis/py.typed": "", "pyncette/redis/plugin.py": ""}
    contents.update(files or {})
    return make_wheel(
        directory,
        "pyncette-redis",
        contents,
        {"redis": "pyncette.redis.plugin"},
        ["pyncette-core>=2.0", "redis>=5"] if requires is None else requires,
    )


def test_good_wheels_pass(tmp_path: Path) -> None:
    assert wheel_problems(core_wheel(tmp_path), "pyncette-core", BACKENDS) == []
    assert wheel_problems(redis_wheel(tmp_path), "pyncette-redis", BACKENDS) == []


def test_backend_shipping_the_namespace_init_fails(tmp_path: Path) -> None:
    wheel = redis_wheel(tmp_path, {"pyncette/__init__.py": ""})
    assert any("ships pyncette/__init__.py" in problem for problem in wheel_problems(wheel, "pyncette-redis", BACKENDS))


@pytest.mark.parametrize("stray", ["redis/__init__.py", "pyncette/sqlite/__init__.py", "pyncette/helpers.py"])
def test_backend_shipping_anything_else_fails(tmp_path: Path, stray: str) -> None:
    problems = wheel_problems(redis_wheel(tmp_path, {stray: ""}), "pyncette-redis", BACKENDS)
    assert any(stray in problem for problem in problems)


def test_backend_without_core_dependency_fails(tmp_path: Path) -> None:
    problems = wheel_problems(redis_wheel(tmp_path, requires=["redis>=5"]), "pyncette-redis", BACKENDS)
    assert any("does not depend on pyncette-core" in problem for problem in problems)


def test_core_whose_first_statement_is_not_extend_path_fails(tmp_path: Path) -> None:
    wheel = core_wheel(tmp_path, {"pyncette/__init__.py": f'"""Pyncette."""\n{EXTEND_PATH}\n'})
    assert any("first statement" in problem for problem in wheel_problems(wheel, "pyncette-core", BACKENDS))


def test_core_taking_a_backend_name_fails(tmp_path: Path) -> None:
    wheel = core_wheel(tmp_path, {"pyncette/redis.py": ""})
    assert any("named like backends" in problem for problem in wheel_problems(wheel, "pyncette-core", BACKENDS))
