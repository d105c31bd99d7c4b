"""Amazon DynamoDB storage backend for pyncette.

``from pyncette.dynamodb import dynamodb_repository`` gives the repository factory; the backend is
also available as ``Pyncette(backend="dynamodb", ...)`` through its entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyncette.lazy import lazy_exports

if TYPE_CHECKING:
    from pyncette.dynamodb.factory import dynamodb_repository
    from pyncette.dynamodb.repository import DynamoDBRepository
    from pyncette.dynamodb.table import table_definition

__all__ = ["DynamoDBRepository", "dynamodb_repository", "table_definition"]

# The driver is imported on first use of these names, not when plugin discovery imports the package.
__getattr__ = lazy_exports(
    __name__,
    {
        "DynamoDBRepository": "pyncette.dynamodb.repository",
        "dynamodb_repository": "pyncette.dynamodb.factory",
        "table_definition": "pyncette.dynamodb.table",
    },
)
