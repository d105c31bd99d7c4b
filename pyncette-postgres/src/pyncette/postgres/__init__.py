"""PostgreSQL backend of Pyncette (asyncpg): ``Pyncette(backend="postgres", postgres_url=...)``."""

from __future__ import annotations

from pyncette.postgres.repository import PostgresRepository, postgres_repository

__all__ = ["PostgresRepository", "postgres_repository"]
