"""SQLite storage backend for pyncette: ``Pyncette(backend="sqlite", sqlite_database="pyncette.db")``."""

from __future__ import annotations

from pyncette.sqlite.factory import sqlite_repository
from pyncette.sqlite.repository import SqliteRepository

__all__ = ["SqliteRepository", "sqlite_repository"]
