"""MySQL 8.0+ and MariaDB 10.6+ storage backend for pyncette (aiomysql).

``mysql_repository(**options)`` is the repository factory; ``Pyncette(backend="mysql", ...)`` finds
it through the ``pyncette`` entry point. See ``docs/backends/mysql.md`` for options and schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyncette.lazy import lazy_exports

if TYPE_CHECKING:
    from pyncette.mysql.factory import mysql_repository
    from pyncette.mysql.repository import MySQLRepository

__all__ = ["MySQLRepository", "mysql_repository"]

# The driver is imported on first use of these names, not when plugin discovery imports the package.
__getattr__ = lazy_exports(
    __name__, {"MySQLRepository": "pyncette.mysql.repository", "mysql_repository": "pyncette.mysql.factory"}
)
