"""``dynamodb_repository``: options, client creation and start-up checks."""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from typing import Any, AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, NoRegionError

from pyncette import options
from pyncette.dynamodb import constants as c
from pyncette.dynamodb.repository import DynamoDBRepository
from pyncette.dynamodb.table import ensure_table
from pyncette.errors import ConfigurationError

_REGION_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def _validate(table_name: str, partition_prefix: str, region_name: str | None, endpoint: str | None) -> None:
    if not isinstance(table_name, str) or not c.TABLE_NAME_PATTERN.fullmatch(table_name):
        raise ConfigurationError(
            f"dynamodb_table_name {table_name!r} is not a valid DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
        )
    if not isinstance(partition_prefix, str) or not c.PARTITION_PREFIX_PATTERN.fullmatch(partition_prefix):
        raise ConfigurationError(
            f"dynamodb_partition_prefix {partition_prefix!r} is invalid (up to 64 of A-Z a-z 0-9 _ . - :, no '#')"
        )
    if region_name is not None and (not isinstance(region_name, str) or not _REGION_PATTERN.fullmatch(region_name)):
        raise ConfigurationError(f"dynamodb_region_name {region_name!r} is not a valid AWS region name")
    if endpoint is not None:
        parsed = urllib.parse.urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError("dynamodb_endpoint must be an http:// or https:// URL with a host")
        if parsed.username is not None or parsed.password is not None:
            # Never echo the value: it holds a secret.
            raise ConfigurationError("dynamodb_endpoint must not embed credentials; use the AWS credential configuration")


@contextlib.asynccontextmanager
async def dynamodb_repository(
    *,
    dynamodb_region_name: str | None = None,
    dynamodb_table_name: str = c.DEFAULT_TABLE_NAME,
    dynamodb_endpoint: str | None = None,
    dynamodb_skip_table_create: bool = False,
    dynamodb_partition_prefix: str = c.DEFAULT_PARTITION_PREFIX,
    dynamodb_client: Any = None,
    concurrency_limit: int | None = None,
    batch_size: int | None = None,
    **_options: Any,
) -> AsyncIterator[DynamoDBRepository]:
    """Yield a :class:`DynamoDBRepository` on ``dynamodb_table_name``, creating the table unless told not to.

    Credentials come from the ambient AWS configuration, unless ``dynamodb_client`` (an entered
    aiobotocore client) is given; such a client is used as is and not closed. Bad configuration
    fails here with a :class:`~pyncette.errors.ConfigurationError` naming the option, an
    unreachable endpoint with a :class:`~pyncette.errors.BackendError`.
    """
    _validate(dynamodb_table_name, dynamodb_partition_prefix, dynamodb_region_name, dynamodb_endpoint)
    skip_create = options.flag("dynamodb_skip_table_create", dynamodb_skip_table_create)
    async with contextlib.AsyncExitStack() as stack:
        client = dynamodb_client
        if client is None:
            pool = max(c.MIN_POOL_CONNECTIONS, concurrency_limit or 0, batch_size or 0)
            config = AioConfig(
                retries=dict(c.BOTOCORE_RETRY),
                connect_timeout=c.CONNECT_TIMEOUT,
                read_timeout=c.READ_TIMEOUT,
                max_pool_connections=min(pool, c.MAX_POOL_CONNECTIONS),
            )
            creator = get_session().create_client(
                "dynamodb", region_name=dynamodb_region_name, endpoint_url=dynamodb_endpoint, config=config
            )
            try:
                client = await stack.enter_async_context(creator)
            except NoRegionError:
                raise ConfigurationError(
                    "no AWS region for the DynamoDB backend: pass dynamodb_region_name or set AWS_DEFAULT_REGION"
                ) from None
            except (BotoCoreError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot create a DynamoDB client ({type(exc).__name__}); check dynamodb_region_name and dynamodb_endpoint"
                ) from None
        elif getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None) != "dynamodb":
            raise ConfigurationError("dynamodb_client must be an aiobotocore client for the 'dynamodb' service")
        await ensure_table(client, dynamodb_table_name, create=not skip_create)
        yield DynamoDBRepository(
            client,
            table_name=dynamodb_table_name,
            partition_prefix=dynamodb_partition_prefix,
            max_in_flight=int(client.meta.config.max_pool_connections or c.MIN_POOL_CONNECTIONS),
        )
