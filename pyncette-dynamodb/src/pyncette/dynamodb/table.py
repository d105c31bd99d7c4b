"""Creating and checking the table: its definition is the schema of this backend."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from pyncette.dynamodb import constants as c
from pyncette.dynamodb.repository import send, translate_error
from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError

logger = logging.getLogger(__name__)


def table_definition(table_name: str) -> dict[str, Any]:
    """The ``CreateTable`` request for ``table_name``: keys, the sparse due index, on-demand capacity."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": c.ATTR_PK, "AttributeType": "S"},
            {"AttributeName": c.ATTR_SK, "AttributeType": "S"},
            {"AttributeName": c.ATTR_READY, "AttributeType": "S"},
            {"AttributeName": c.ATTR_DUE, "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": c.ATTR_PK, "KeyType": "HASH"},
            {"AttributeName": c.ATTR_SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": c.INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": c.ATTR_READY, "KeyType": "HASH"},
                    {"AttributeName": c.ATTR_DUE, "KeyType": "RANGE"},
                ],
                # Claims read the full item from the conditional update itself, so the index needs only keys.
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


TTL_SPECIFICATION = {"Enabled": True, "AttributeName": c.ATTR_EXPIRES}
"""The ``UpdateTimeToLive`` specification: DynamoDB deletes expired tombstones of completed once-off runs."""


async def _request(client: Any, action: str, table_name: str, **kwargs: Any) -> dict[str, Any]:
    try:
        return await send(client, action, **kwargs)
    except (BotoCoreError, ClientError, OSError, asyncio.TimeoutError) as exc:
        raise translate_error(exc, action, table_name) from None


async def _describe(client: Any, table_name: str) -> dict[str, Any] | None:
    try:
        response = await send(client, "describe_table", TableName=table_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise translate_error(exc, "describe_table", table_name) from None
    except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
        raise translate_error(exc, "describe_table", table_name) from None
    table: dict[str, Any] = response["Table"]
    return table


def _is_active(table: dict[str, Any]) -> bool:
    indexes = table.get("GlobalSecondaryIndexes", [])
    return table.get("TableStatus") == "ACTIVE" and all(index.get("IndexStatus") == "ACTIVE" for index in indexes)


async def _wait_active(client: Any, table_name: str) -> dict[str, Any]:
    delay = 0.05
    with anyio.move_on_after(c.TABLE_ACTIVE_TIMEOUT):
        while True:
            table = await _describe(client, table_name)
            if table is not None and _is_active(table):
                return table
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise BackendError(
        f"DynamoDB table {table_name!r} (dynamodb_table_name) did not become ACTIVE within {c.TABLE_ACTIVE_TIMEOUT:.0f}s"
    )


def _check_layout(table: dict[str, Any], table_name: str) -> None:
    expected = table_definition(table_name)
    index_keys = {index["IndexName"]: index["KeySchema"] for index in table.get("GlobalSecondaryIndexes", [])}
    wanted_index = expected["GlobalSecondaryIndexes"][0]
    if table.get("KeySchema") != expected["KeySchema"] or index_keys.get(c.INDEX_NAME) != wanted_index["KeySchema"]:
        raise SchemaVersionError(
            f"DynamoDB table {table_name!r} (dynamodb_table_name) does not have the layout this backend needs "
            f"(keys {c.ATTR_PK}/{c.ATTR_SK} and index {c.INDEX_NAME!r} on {c.ATTR_READY}/{c.ATTR_DUE}); "
            "use another table name or create it as docs/backends/dynamodb.md shows"
        )


async def ensure_table(client: Any, table_name: str, *, create: bool) -> None:
    """Make sure ``table_name`` exists with this backend's layout, creating it if ``create``.

    Several workers may start at once: a concurrent creation is waited for, not an error. Raises
    :class:`ConfigurationError` when the table is missing and may not be created, and
    :class:`SchemaVersionError` when it has another layout or records a newer schema version.
    """
    table = await _describe(client, table_name)
    if table is None:
        if not create:
            raise ConfigurationError(
                f"DynamoDB table {table_name!r} (dynamodb_table_name) does not exist and dynamodb_skip_table_create "
                "is set; create it as docs/backends/dynamodb.md shows, or let the backend create it"
            )
        try:
            await send(client, "create_table", **table_definition(table_name))
            logger.info("created DynamoDB table %r", table_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise translate_error(exc, "create_table", table_name) from None
        except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            raise translate_error(exc, "create_table", table_name) from None
    if table is None or not _is_active(table):
        table = await _wait_active(client, table_name)
    _check_layout(table, table_name)
    await _check_version(client, table_name, create=create)
    if create:
        await _enable_ttl(client, table_name)


async def _enable_ttl(client: Any, table_name: str) -> None:
    response = await _request(client, "describe_time_to_live", table_name, TableName=table_name)
    if response.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    try:
        await send(client, "update_time_to_live", TableName=table_name, TimeToLiveSpecification=TTL_SPECIFICATION)
    except ClientError as exc:
        # Another worker enabled it in between (DynamoDB refuses to enable it twice).
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise translate_error(exc, "update_time_to_live", table_name) from None
    except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
        raise translate_error(exc, "update_time_to_live", table_name) from None


async def _check_version(client: Any, table_name: str, *, create: bool) -> None:
    key = {c.ATTR_PK: {"S": c.META_PARTITION_KEY}, c.ATTR_SK: {"S": c.META_SORT_KEY}}
    response = await _request(client, "get_item", table_name, TableName=table_name, Key=key, ConsistentRead=True)
    item = response.get("Item")
    if item is None:
        if create:
            try:
                await send(
                    client,
                    "put_item",
                    TableName=table_name,
                    Item={**key, c.ATTR_SCHEMA_VERSION: {"N": str(c.SCHEMA_VERSION)}},
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": c.ATTR_PK},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise translate_error(exc, "put_item", table_name) from None
            except (BotoCoreError, OSError, asyncio.TimeoutError) as exc:
                raise translate_error(exc, "put_item", table_name) from None
        return
    version = int(item.get(c.ATTR_SCHEMA_VERSION, {}).get("N", "0"))
    if version != c.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"DynamoDB table {table_name!r} (dynamodb_table_name) records schema version {version}; "
            f"this version of pyncette-dynamodb uses version {c.SCHEMA_VERSION}"
        )
