"""Amazon DynamoDB storage backend for pyncette.

``from pyncette.dynamodb import dynamodb_repository`` gives the repository factory; the backend is
also available as ``Pyncette(backend="dynamodb", ...)`` through its entry point.
"""

from __future__ import annotations

from pyncette.dynamodb.factory import dynamodb_repository
from pyncette.dynamodb.repository import DynamoDBRepository
from pyncette.dynamodb.table import table_definition

__all__ = ["DynamoDBRepository", "dynamodb_repository", "table_definition"]
