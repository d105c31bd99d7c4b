"""DynamoDB-specific behaviour: options, validation, table management, faults and batching."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import inspect
import logging
import socket
from collections import Counter
from typing import Any, AsyncIterator

import anyio
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ConnectionClosedError

from pyncette.dynamodb import constants as c
from pyncette.dynamodb import dynamodb_repository, table_definition
from pyncette.dynamodb.plugin import pyncette_backends
from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.model import Completion, RegisterOutcome, Registration, TaskKey
from tests.backends.dynamodb.conftest import DUMMY_ENVIRONMENT, REGION, MotoServer, start_moto
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def reg(scope: str, name: str, next_run: datetime.datetime = T0, spec: str = "{}") -> Registration:
    return Registration(key=TaskKey(scope, name), spec=spec, data="{}", next_run=next_run)


@contextlib.asynccontextmanager
async def raw_client(endpoint: str) -> AsyncIterator[Any]:
    async with get_session().create_client("dynamodb", region_name=REGION, endpoint_url=endpoint) as client:
        yield client


class CountingClient:
    """Forwards to an aiobotocore client, counting calls per operation and the most in flight at once."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(**kwargs: Any) -> Any:
            self.calls[name] += 1
            self.in_flight += 1
            self.max_in_flight[name] = max(self.max_in_flight[name], self.in_flight)
            try:
                return await method(**kwargs)
            finally:
                self.in_flight -= 1

        return call

    def reset(self) -> None:
        self.calls.clear()
        self.max_in_flight.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Plugin and options


def test_entry_point_and_declared_options() -> None:
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="pyncette") if ep.name == "dynamodb"]
    assert entry_point.value == "pyncette.dynamodb.plugin"
    (info,) = pyncette_backends()
    assert (info.name, info.load_factory(), info.distribution) == ("dynamodb", dynamodb_repository, "pyncette-dynamodb")
    parameters = inspect.signature(info.load_factory()).parameters
    keywords = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(info.options) == keywords
    assert {"dynamodb_region_name", "dynamodb_table_name", "dynamodb_endpoint", "dynamodb_skip_table_create"} <= keywords
    assert all(info.options.values())


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"dynamodb_table_name": "no spaces allowed"}, "dynamodb_table_name"),
        ({"dynamodb_table_name": "ab"}, "dynamodb_table_name"),
        ({"dynamodb_partition_prefix": "has#hash"}, "dynamodb_partition_prefix"),
        ({"dynamodb_region_name": "Not A Region"}, "dynamodb_region_name"),
        ({"dynamodb_endpoint": "ftp://127.0.0.1:1"}, "dynamodb_endpoint"),
        ({"dynamodb_endpoint": "not a url"}, "dynamodb_endpoint"),
    ],
)
async def test_invalid_options_fail_at_start_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        async with dynamodb_repository(**{"dynamodb_region_name": REGION, **options}):
            pytest.fail("must not start")


async def test_endpoint_credentials_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError, match="dynamodb_endpoint") as raised:
        async with dynamodb_repository(dynamodb_region_name=REGION, dynamodb_endpoint="http://user:hunter2@127.0.0.1:1"):
            pytest.fail("must not start")
    assert "hunter2" not in str(raised.value)


async def test_missing_region_names_the_option(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ConfigurationError, match="dynamodb_region_name"):
        async with dynamodb_repository(dynamodb_endpoint=moto_endpoint):
            pytest.fail("must not start")


async def test_missing_credentials_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, dynamodb_options: dict[str, Any]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError, match="credentials"):
        async with dynamodb_repository(**dynamodb_options):
            pytest.fail("must not start")


async def test_unreachable_endpoint_fails_at_start_naming_the_option(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match="dynamodb_endpoint") as raised:
        async with dynamodb_repository(dynamodb_region_name=REGION, dynamodb_endpoint=endpoint):
            pytest.fail("must not start")
    assert "EndpointConnectionError" in str(raised.value)  # the driver's error, without its exception chained
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert DUMMY_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"] not in str(raised.value) + caplog.text


async def test_rejected_credentials_fail_at_start_without_leaking_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # moto then checks keys against its IAM
    try:
        with pytest.raises(ConfigurationError, match="credentials") as raised:
            async with dynamodb_repository(dynamodb_region_name=REGION, dynamodb_endpoint=server.endpoint):
                pytest.fail("must not start")
    finally:
        server.stop()
    for secret in (DUMMY_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"], DUMMY_ENVIRONMENT["AWS_SESSION_TOKEN"]):
        assert secret not in str(raised.value)
        assert secret not in caplog.text


async def test_unknown_options_are_ignored(dynamodb_options: dict[str, Any]) -> None:
    async with dynamodb_repository(**dynamodb_options, redis_url="redis://x", concurrency_limit=7, batch_size=50) as repository:
        assert await repository.get_task(TaskKey("t", "")) is None


# Table management


async def test_table_is_created_with_the_documented_definition(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    table_name = dynamodb_options["dynamodb_table_name"]
    async with dynamodb_repository(**dynamodb_options):
        pass
    async with raw_client(moto_endpoint) as client:
        table = (await client.describe_table(TableName=table_name))["Table"]
        ttl = await client.describe_time_to_live(TableName=table_name)
        meta = await client.get_item(
            TableName=table_name, Key={c.ATTR_PK: {"S": c.META_PARTITION_KEY}, c.ATTR_SK: {"S": c.META_SORT_KEY}}
        )
    definition = table_definition(table_name)
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == definition["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = table["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["KeySchema"], index["Projection"]) == (
        c.INDEX_NAME,
        definition["GlobalSecondaryIndexes"][0]["KeySchema"],
        {"ProjectionType": "KEYS_ONLY"},
    )
    assert meta["Item"][c.ATTR_SCHEMA_VERSION] == {"N": str(c.SCHEMA_VERSION)}
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": c.ATTR_EXPIRES}


async def test_concurrent_first_starts_all_succeed(dynamodb_options: dict[str, Any]) -> None:
    started: list[bool] = []

    async def start() -> None:
        async with dynamodb_repository(**dynamodb_options) as repository:
            await repository.register_tasks(T0, [reg("s", "a")])
            started.append(True)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(start)
    assert started == [True] * 4


async def test_skip_table_create_requires_an_existing_table(dynamodb_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="dynamodb_skip_table_create") as raised:
        async with dynamodb_repository(**dynamodb_options, dynamodb_skip_table_create=True):
            pytest.fail("must not start")
    assert "dynamodb_table_name" in str(raised.value)


async def test_skip_table_create_uses_a_precreated_table(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with raw_client(moto_endpoint) as client:
        await client.create_table(**table_definition(dynamodb_options["dynamodb_table_name"]))
    async with dynamodb_repository(**dynamodb_options, dynamodb_skip_table_create=True) as repository:
        await repository.register_tasks(T0, [reg("s", "a")])
        result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)
        assert [claimed.state.key for claimed in result.claimed] == [TaskKey("s", "a")]


async def test_table_with_another_layout_is_refused(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with raw_client(moto_endpoint) as client:
        await client.create_table(
            TableName=dynamodb_options["dynamodb_table_name"],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    with pytest.raises(SchemaVersionError, match="dynamodb_table_name"):
        async with dynamodb_repository(**dynamodb_options):
            pytest.fail("must not start")
    async with raw_client(moto_endpoint) as client:
        ttl = await client.describe_time_to_live(TableName=dynamodb_options["dynamodb_table_name"])
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED", "a foreign table is left untouched"


async def test_newer_schema_version_is_refused(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with dynamodb_repository(**dynamodb_options):
        pass
    async with raw_client(moto_endpoint) as client:
        await client.put_item(
            TableName=dynamodb_options["dynamodb_table_name"],
            Item={
                c.ATTR_PK: {"S": c.META_PARTITION_KEY},
                c.ATTR_SK: {"S": c.META_SORT_KEY},
                c.ATTR_SCHEMA_VERSION: {"N": str(c.SCHEMA_VERSION + 1)},
            },
        )
    with pytest.raises(SchemaVersionError, match="schema version"):
        async with dynamodb_repository(**dynamodb_options):
            pytest.fail("must not start")


# Clients, prefixes, layout


async def test_a_client_passed_in_is_used_and_not_closed(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client:
        async with dynamodb_repository(**options, dynamodb_client=client) as repository:
            await repository.register_tasks(T0, [reg("s", "a")])
        response = await client.describe_table(TableName=dynamodb_options["dynamodb_table_name"])
        assert response["Table"]["ItemCount"] >= 0
        async with dynamodb_repository(**options, dynamodb_client=client) as repository:
            assert await repository.get_task(TaskKey("s", "a")) is not None


async def test_a_client_of_another_service_is_refused(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=moto_endpoint) as client:
        with pytest.raises(ConfigurationError, match="dynamodb_client"):
            async with dynamodb_repository(**dynamodb_options, dynamodb_client=client):
                pytest.fail("must not start")


async def test_partition_prefixes_isolate_apps_sharing_a_table(dynamodb_options: dict[str, Any]) -> None:
    async with (
        dynamodb_repository(**dynamodb_options, dynamodb_partition_prefix="app1") as app1,
        dynamodb_repository(**dynamodb_options, dynamodb_partition_prefix="app2") as app2,
    ):
        await app1.register_tasks(T0, [reg("s", "a")])
        assert await app2.get_task(TaskKey("s", "a")) is None
        assert (await app2.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)).claimed == ()
        assert (await app2.list_tasks("s", limit=5)).states == ()
        assert len((await app1.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)).claimed) == 1


async def test_partitions_of_a_task_are_distinct_partition_keys(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with dynamodb_repository(**dynamodb_options, dynamodb_partition_prefix="app") as repository:
        await repository.register_tasks(T0, [reg(f"task:{p}", f"i{p}") for p in range(3)] + [reg("task:0", "")])
    async with raw_client(moto_endpoint) as client:
        items = (await client.scan(TableName=dynamodb_options["dynamodb_table_name"]))["Items"]
    keys = {(item[c.ATTR_PK]["S"], item[c.ATTR_SK]["S"]) for item in items if item[c.ATTR_PK]["S"] != c.META_PARTITION_KEY}
    assert keys == {("app#task:0", "#i0"), ("app#task:1", "#i1"), ("app#task:2", "#i2"), ("app#task:0", "#")}


async def test_paused_items_leave_the_due_index(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    async with dynamodb_repository(**dynamodb_options) as repository:
        await repository.register_tasks(T0, [reg("s", "a"), reg("s", "b")])
        await repository.set_paused(T0, TaskKey("s", "a"), True)
        async with raw_client(moto_endpoint) as client:
            response = await client.scan(TableName=dynamodb_options["dynamodb_table_name"], IndexName=c.INDEX_NAME)
        assert [item[c.ATTR_SK]["S"] for item in response["Items"]] == ["#b"]


# Lease edge cases


async def test_claim_when_stored_token_is_ahead_of_the_clock(dynamodb_options: dict[str, Any]) -> None:
    async with dynamodb_repository(**dynamodb_options) as repository:
        await repository.register_tasks(T0, [reg("s", "a", next_run=T0 - 10 * SECOND)])
        (first,) = (await repository.claim_due(T0, "s", owner="w1", lease_duration=LEASE, limit=1)).claimed
        done = Completion(key=first.state.key, lease=first.lease, next_run=T0 - 5 * SECOND, data="{}")
        assert await repository.complete_tasks(T0, [done]) == [True]
        # A worker whose clock is behind: the token must still grow past the stored one.
        (second,) = (await repository.claim_due(T0 - SECOND, "s", owner="w2", lease_duration=LEASE, limit=1)).claimed
        assert second.lease.token == first.lease.token + 1
        assert await repository.get_task(first.state.key) == second.state


async def test_extend_keeps_a_later_next_run_in_the_index(dynamodb_options: dict[str, Any]) -> None:
    async with dynamodb_repository(**dynamodb_options) as repository:
        key = TaskKey("s", "a")
        await repository.register_tasks(T0, [reg("s", "a")])
        (claimed,) = (await repository.claim_due(T0, "s", owner="w1", lease_duration=LEASE, limit=1)).claimed
        later = T0 + 3600 * SECOND
        assert await repository.set_paused(T0, key, False, next_run=later)
        extended = await repository.extend_lease(T0 + SECOND, key, claimed.lease, LEASE)
        assert extended is not None
        assert extended.locked_until == T0 + SECOND + LEASE
        result = await repository.claim_due(T0 + 2 * LEASE, "s", owner="w2", lease_duration=LEASE, limit=1)
        assert result.claimed == ()
        assert result.next_due == later
        assert len((await repository.claim_due(later, "s", owner="w2", lease_duration=LEASE, limit=1)).claimed) == 1


async def test_next_due_after_claiming_everything_is_the_lease_expiry(dynamodb_options: dict[str, Any]) -> None:
    async with dynamodb_repository(**dynamodb_options) as repository:
        await repository.register_tasks(T0, [reg("s", "a"), reg("s", "b"), reg("t", "")])
        assert (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=10)).next_due == T0 + LEASE
        single = await repository.claim_due(T0, "t", owner="w", lease_duration=LEASE, limit=1, instance="")
        assert single.next_due == T0 + LEASE
        assert (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=10)).next_due == T0 + LEASE
        await repository.unregister_task(T0, TaskKey("t", ""))
        assert (await repository.claim_due(T0, "t", owner="w", lease_duration=LEASE, limit=10)).next_due is None


# Batching


async def test_batches_are_issued_concurrently(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client:
        counting = CountingClient(client)
        async with dynamodb_repository(**options, dynamodb_client=counting) as repository:
            counting.reset()
            await repository.register_tasks(T0, [reg("s", f"i{i:02d}", next_run=T0 - i * SECOND) for i in range(20)])
            assert counting.calls == {"put_item": 20}
            assert counting.max_in_flight["put_item"] > 1

            counting.reset()
            result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=15)
            assert len(result.claimed) == 15
            assert result.more
            assert [c.state.key.instance for c in result.claimed] == [f"i{i:02d}" for i in range(19, 4, -1)]
            assert counting.calls == {"query": 2, "update_item": 15}  # due candidates; next_due, alongside the claims
            assert counting.max_in_flight["update_item"] > 1

            counting.reset()
            completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data="{}") for c in result.claimed]
            assert await repository.complete_tasks(T0, completions) == [True] * 15
            assert counting.calls == {"update_item": 15}
            assert counting.max_in_flight["update_item"] > 1

            counting.reset()
            result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=15)
            assert len(result.claimed) == 5
            assert not result.more
            assert result.next_due == T0 + SECOND
            assert counting.calls == {"query": 2, "update_item": 5}


async def test_a_poll_reads_only_due_items_however_many_are_stored(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client:
        counting = CountingClient(client)
        async with dynamodb_repository(**options, dynamodb_client=counting) as repository:
            future = [reg("s", f"f{i:03d}", next_run=T0 + (i + 1) * SECOND) for i in range(300)]
            await repository.register_tasks(T0, [*future, *(reg("s", f"d{i}", next_run=T0 - SECOND) for i in range(5))])
            scanned: list[int] = []
            query = counting.__getattr__("query")

            async def counting_query(**kwargs: Any) -> Any:
                response = await query(**kwargs)
                scanned.append(response["ScannedCount"])
                return response

            counting.query = counting_query  # type: ignore[method-assign]
            result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=100)
        assert len(result.claimed) == 5
        assert result.next_due == T0 + SECOND
        assert sorted(scanned) == [1, 5]  # the five due items, then the first future one, of 305 stored


async def test_a_claim_reads_on_when_other_workers_win_the_first_candidates(
    dynamodb_options: dict[str, Any], moto_endpoint: str
) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client, dynamodb_repository(**dynamodb_options) as rival:
        counting = CountingClient(client)
        async with dynamodb_repository(**options, dynamodb_client=counting) as repository:
            await repository.register_tasks(T0, [reg("s", f"i{i:02d}", next_run=T0 - (30 - i) * SECOND) for i in range(30)])
            query = counting.__getattr__("query")

            async def query_then_lose_three(**kwargs: Any) -> Any:
                response = await query(**kwargs)
                if counting.calls["query"] == 1:  # another worker claims three candidates in between
                    for item in response["Items"][:3]:
                        instance = item[c.ATTR_SK]["S"][1:]
                        await rival.claim_due(T0, "s", owner="rival", lease_duration=LEASE, limit=1, instance=instance)
                return response

            counting.query = query_then_lose_three  # type: ignore[method-assign]
            result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=10)
        assert [c.state.key.instance for c in result.claimed] == [f"i{i:02d}" for i in range(3, 13)]
        assert result.more
        assert counting.calls["query"] >= 2


# Retries


class ThrottlingClient(CountingClient):
    """Answers the first ``failures`` calls of ``operation`` with a throttling error."""

    def __init__(self, client: Any, operation: str, failures: int) -> None:
        super().__init__(client)
        self.operation = operation
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        forward = super().__getattr__(name)
        if name != self.operation:
            return forward

        async def call(**kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                self.calls[name] += 1
                error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
                raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, name)
            return await forward(**kwargs)

        return call


async def test_throttling_is_retried_with_backoff(dynamodb_options: dict[str, Any], moto_endpoint: str) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client:
        throttled = ThrottlingClient(client, "get_item", failures=0)
        async with dynamodb_repository(**options, dynamodb_client=throttled) as repository:
            await repository.register_tasks(T0, [reg("s", "a")])
            throttled.failures, throttled.calls["get_item"] = c.RETRY_ATTEMPTS - 1, 0
            assert await repository.get_task(TaskKey("s", "a")) is not None
            assert throttled.calls["get_item"] == c.RETRY_ATTEMPTS

            throttled.failures = c.RETRY_ATTEMPTS
            with pytest.raises(BackendError, match="ProvisionedThroughputExceededException") as raised:
                await repository.get_task(TaskKey("s", "a"))
            assert isinstance(raised.value.__cause__, ClientError)


class LosingResponsesClient(CountingClient):
    """Applies the next call of each operation in ``lose``, then drops its response as a cut connection would."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.lose: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        forward = super().__getattr__(name)

        async def call(**kwargs: Any) -> Any:
            response = await forward(**kwargs)
            if name in self.lose:
                self.lose.discard(name)
                raise ConnectionClosedError(endpoint_url="http://127.0.0.1")
            return response

        return call


async def test_writes_whose_response_was_lost_are_recognised_on_retry(
    dynamodb_options: dict[str, Any], moto_endpoint: str
) -> None:
    options = {k: v for k, v in dynamodb_options.items() if k != "dynamodb_endpoint"}
    async with raw_client(moto_endpoint) as client:
        losing = LosingResponsesClient(client)
        async with dynamodb_repository(**options, dynamodb_client=losing) as repository:
            losing.lose = {"put_item"}
            assert await repository.register_tasks(T0, [reg("s", "once"), reg("s", "again")]) == [RegisterOutcome.CREATED] * 2

            losing.lose = {"update_item"}
            result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1, instance="once")
            (claimed,) = result.claimed
            assert claimed.lease.owner == "w"

            losing.lose = {"update_item"}
            assert await repository.complete_tasks(
                T0, [Completion(key=claimed.state.key, lease=claimed.lease, next_run=None, data="{}")]
            ) == [True]
            assert await repository.get_task(claimed.state.key) is None

            (again,) = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)).claimed
            losing.lose = {"update_item"}
            done = Completion(key=again.state.key, lease=again.lease, next_run=T0 + SECOND, data='{"n": 1}')
            assert await repository.complete_tasks(T0, [done]) == [True]
            state = await repository.get_task(again.state.key)
            assert state is not None
            assert (state.locked_by, state.next_run, state.data) == (None, T0 + SECOND, '{"n": 1}')
            # A second, separate completion with the same lease is not a retry: it does not apply.
            assert await repository.complete_tasks(T0, [done]) == [False]


async def test_a_completed_once_off_instance_leaves_an_invisible_expiring_tombstone(
    dynamodb_options: dict[str, Any], moto_endpoint: str
) -> None:
    key = TaskKey("s", "once")
    async with raw_client(moto_endpoint) as client, dynamodb_repository(**dynamodb_options) as repository:
        await repository.register_tasks(T0, [reg("s", "once")])
        (claimed,) = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)).claimed
        assert await repository.complete_tasks(T0, [Completion(key=key, lease=claimed.lease, next_run=None, data="{}")]) == [True]
        raw_key = {c.ATTR_PK: {"S": "pyncette#s"}, c.ATTR_SK: {"S": "#once"}}
        stored = (await client.get_item(TableName=dynamodb_options["dynamodb_table_name"], Key=raw_key))["Item"]
        assert stored[c.ATTR_GONE] == {"BOOL": True}
        assert stored[c.ATTR_EXPIRES] == {"N": str(int((T0 + c.TOMBSTONE_LIFETIME).timestamp()))}
        assert c.ATTR_READY not in stored
        assert c.ATTR_SPEC not in stored

        assert await repository.get_task(key) is None
        assert (await repository.list_tasks("s", limit=10)).states == ()
        assert (await repository.claim_due(T0 + LEASE, "s", owner="w", lease_duration=LEASE, limit=5)).claimed == ()
        assert await repository.set_paused(T0, key, True) is False
        assert await repository.extend_lease(T0, key, claimed.lease, LEASE) is None
        assert await repository.complete_tasks(T0, [Completion(key=key, lease=claimed.lease, next_run=None, data="{}")]) == [
            False
        ]
        assert await repository.unregister_task(T0, key) is False

        await repository.register_tasks(T0, [reg("s", "again")])
        (claimed,) = (await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=1)).claimed
        assert await repository.complete_tasks(
            T0, [Completion(key=claimed.state.key, lease=claimed.lease, next_run=None, data="{}")]
        ) == [True]
        assert await repository.register_tasks(T0, [reg("s", "again")]) == [RegisterOutcome.CREATED]
        state = await repository.get_task(claimed.state.key)
        assert state is not None
        assert (state.locked_by, state.fencing_token) == (None, 0)
        assert await repository.unregister_task(T0, claimed.state.key) is True


# Faults


@pytest.fixture
def proxy(moto_server: MotoServer) -> Any:
    with TcpProxy("127.0.0.1", moto_server.port) as proxy:
        yield proxy


async def test_refused_connections_raise_backend_error_then_recover(dynamodb_options: dict[str, Any], proxy: TcpProxy) -> None:
    options = {**dynamodb_options, "dynamodb_endpoint": f"http://127.0.0.1:{proxy.port}"}
    async with dynamodb_repository(**options) as repository:
        await repository.register_tasks(T0, [reg("s", "a")])
        proxy.down("refuse")
        try:
            with pytest.raises(BackendError) as raised:
                await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)
            assert raised.value.__cause__ is not None
        finally:
            proxy.up()
        result = await repository.claim_due(T0, "s", owner="w", lease_duration=LEASE, limit=5)
        assert [claimed.state.key for claimed in result.claimed] == [TaskKey("s", "a")]


async def test_connections_cut_mid_flight_are_retried_or_reported(dynamodb_options: dict[str, Any], proxy: TcpProxy) -> None:
    options = {**dynamodb_options, "dynamodb_endpoint": f"http://127.0.0.1:{proxy.port}"}
    async with dynamodb_repository(**options) as repository:
        await repository.register_tasks(T0, [reg("s", f"i{i:02d}") for i in range(40)])
        outcomes: list[str] = []

        async def read(index: int) -> None:
            try:
                state = await repository.get_task(TaskKey("s", f"i{index:02d}"))
                outcomes.append("ok" if state is not None else "missing")
            except BackendError:
                outcomes.append("backend-error")

        dropped: list[int] = []

        async def cutter() -> None:
            for _ in range(5):
                dropped.append(await anyio.to_thread.run_sync(proxy.cut))

        async with anyio.create_task_group() as group:
            for index in range(40):
                group.start_soon(read, index)
            group.start_soon(cutter)
        assert len(outcomes) == 40
        assert "missing" not in outcomes
        assert sum(dropped) > 0  # requests really were in flight when their connections were cut
        page = await repository.list_tasks("s", limit=100)
        assert len(page.states) == 40
