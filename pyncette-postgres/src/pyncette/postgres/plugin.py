"""Registers the ``postgres`` backend with pyncette through the ``pyncette`` entry-point group."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo
from pyncette.postgres import constants

OPTIONS = {
    "postgres_url": f"connection URL, e.g. postgres://user:password@host:5432/db (default {constants.DEFAULT_URL})",
    "postgres_table_name": f"table of the task instances, optionally schema-qualified (default {constants.DEFAULT_TABLE_NAME})",
    "postgres_skip_table_create": "do not create or upgrade the table; it must exist with the current schema (default False)",
    "postgres_pool_size": f"connections in the pool (default concurrency_limit, at most {constants.MAX_DEFAULT_POOL_SIZE})",
    "postgres_pool": "an existing asyncpg pool to use instead of postgres_url; it is not closed on exit",
    "postgres_notify": "NOTIFY other workers when an instance gets a next run, for push wake-ups (default True)",
    "concurrency_limit": "the app's concurrency limit; sizes the default pool",
    "batch_size": "the app's claim batch size; accepted, not used by this backend",
}


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="postgres",
            factory="pyncette.postgres.repository:postgres_repository",
            options=OPTIONS,
            description="PostgreSQL 12+ through asyncpg; one-statement SKIP LOCKED claims, LISTEN/NOTIFY wake-ups",
            distribution="pyncette-postgres",
        )
    ]
