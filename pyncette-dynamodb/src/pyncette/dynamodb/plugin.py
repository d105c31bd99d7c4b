"""Registers the ``dynamodb`` backend with pyncette through the ``pyncette`` entry-point group."""

from __future__ import annotations

from pyncette.dynamodb import constants as c
from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo

OPTIONS = {
    "dynamodb_region_name": "AWS region of the table (default: the ambient AWS configuration)",
    "dynamodb_table_name": f"table holding every instance (default {c.DEFAULT_TABLE_NAME!r})",
    "dynamodb_endpoint": "endpoint URL for DynamoDB Local, moto or another compatible server (default: AWS)",
    "dynamodb_skip_table_create": "do not create the table; it must exist with the documented layout (default False)",
    "dynamodb_partition_prefix": f"partition key prefix, to share a table between apps (default {c.DEFAULT_PARTITION_PREFIX!r})",
    "dynamodb_client": "an entered aiobotocore DynamoDB client to use instead of creating one; it is not closed",
    "concurrency_limit": "sizes the HTTP connection pool, with batch_size",
    "batch_size": "sizes the HTTP connection pool, so a batch's conditional writes run at once",
}
"""Every keyword option :func:`dynamodb_repository` accepts, with a one-line description."""


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="dynamodb",
            factory="pyncette.dynamodb.factory:dynamodb_repository",
            options=dict(OPTIONS),
            description="Amazon DynamoDB (or a compatible server) through aiobotocore",
            distribution="pyncette-dynamodb",
        )
    ]
