"""MySQL 8.0+ and MariaDB 10.6+ storage backend for pyncette (aiomysql).

``mysql_repository(**options)`` is the repository factory; ``Pyncette(backend="mysql", ...)`` finds
it through the ``pyncette`` entry point. See ``docs/backends/mysql.md`` for options and schema.
"""

from __future__ import annotations

from pyncette.mysql.factory import mysql_repository
from pyncette.mysql.repository import MySQLRepository

__all__ = ["MySQLRepository", "mysql_repository"]
