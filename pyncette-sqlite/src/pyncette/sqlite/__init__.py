"""SQLite storage backend for pyncette: ``Pyncette(backend="sqlite", sqlite_database="pyncette.db")``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyncette.lazy import lazy_exports

if TYPE_CHECKING:
    from pyncette.sqlite.factory import sqlite_repository
    from pyncette.sqlite.repository import SqliteRepository

__all__ = ["SqliteRepository", "sqlite_repository"]

# The driver is imported on first use of these names, not when plugin discovery imports the package.
__getattr__ = lazy_exports(
    __name__, {"SqliteRepository": "pyncette.sqlite.repository", "sqlite_repository": "pyncette.sqlite.factory"}
)
