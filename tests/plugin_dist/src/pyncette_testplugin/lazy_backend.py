"""The ``lazy`` backend's factory: the plugin names it by import path, so discovery never imports this module."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from pyncette.memory import MemoryRepository
from pyncette_testplugin import stand_in_driver


@contextlib.asynccontextmanager
async def lazy_repository(*, lazy_label: str = "default", **_: Any) -> AsyncIterator[MemoryRepository]:
    stand_in_driver.connect(lazy_label)
    yield MemoryRepository()
