from __future__ import annotations

import pathlib
import uuid

import pytest


@pytest.fixture
def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def database(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "pyncette.db")
