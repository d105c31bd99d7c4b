"""Registers the ``mysql`` backend through the ``pyncette`` entry point."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo

OPTIONS = {
    "mysql_host": "server host name or address (default 'localhost')",
    "mysql_port": "server TCP port (default 3306)",
    "mysql_user": "user name (required unless mysql_pool is given)",
    "mysql_password": "password (never logged or shown in errors)",
    "mysql_database": "database holding the table (required unless mysql_pool is given)",
    "mysql_table_name": "table name, a plain identifier (default 'pyncette_tasks')",
    "mysql_skip_table_create": "do not create the table at start; it must exist with the current schema",
    "mysql_ssl": "TLS: an ssl.SSLContext, or True for the system's default verification (default off)",
    "mysql_pool_size": "maximum pooled connections (default concurrency_limit + 2, at most 32)",
    "mysql_pool": "an existing aiomysql pool to use instead of connecting; it is not closed by pyncette",
    "mysql_connect_timeout": "seconds to wait for a connection (default 10)",
    "concurrency_limit": "sizes the connection pool when mysql_pool_size is not given",
    "batch_size": "accepted for every backend; claims are sized by the scheduler",
}


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="mysql",
            factory="pyncette.mysql.factory:mysql_repository",
            options=OPTIONS,
            description="MySQL 8.0+ / MariaDB 10.6+ table, claims with FOR UPDATE SKIP LOCKED",
            distribution="pyncette-mysql",
        )
    ]
