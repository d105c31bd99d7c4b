"""Stores for the reliability tests: the memory backend plus every store of the multi-process tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.multiprocess.conftest import STORES, Store
from tests.multiprocess.conftest import store as store


@pytest.fixture(params=["memory", *STORES])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """One store per backend, in-process; ``Pyncette(backend=b.backend, **b.options)`` opens it."""
    if request.param == "memory":
        yield Store("memory", {})
        return
    stores = STORES[request.param](tmp_path, monkeypatch)
    yield next(stores)
    for _ in stores:
        pass


def app_options(store: Store, **extra: Any) -> dict[str, Any]:
    return {"backend": store.backend, **store.options, **extra}
