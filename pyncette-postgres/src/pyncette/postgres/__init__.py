"""PostgreSQL backend of Pyncette (asyncpg): ``Pyncette(backend="postgres", postgres_url=...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyncette.lazy import lazy_exports

if TYPE_CHECKING:
    from pyncette.postgres.repository import PostgresRepository, postgres_repository

__all__ = ["PostgresRepository", "postgres_repository"]

# The driver is imported on first use of these names, not when plugin discovery imports the package.
__getattr__ = lazy_exports(
    __name__, {"PostgresRepository": "pyncette.postgres.repository", "postgres_repository": "pyncette.postgres.repository"}
)
