"""Behaviour specific to the Redis backend: options, errors, key layout, scripts, faults, wake-ups."""

from __future__ import annotations

import datetime
import importlib.metadata
import inspect
import uuid
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as aioredis_connection
import redis.crc
from redis.backoff import NoBackoff
from redis.retry import Retry

from pyncette import Context, Pyncette
from pyncette.errors import BackendError, ConfigurationError, SchemaVersionError
from pyncette.model import Completion, RegisterOutcome, Registration, TaskKey, to_micros
from pyncette.redis import RedisRepository, redis_repository
from pyncette.redis import constants as redis_constants
from pyncette.redis.plugin import pyncette_backends
from pyncette.redis.repository import redact_url
from pyncette.testing import FakeClock, run_until
from tests.backends.redis.conftest import PrivateRedis, TlsRedis, namespace_keys
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)
PASSWORD = "s3cr3t-Pa55word"


def reg(key: TaskKey, next_run: datetime.datetime = T0, spec: str = '{"v": 1}') -> Registration:
    return Registration(key=key, spec=spec, data="{}", next_run=next_run)


def scope() -> str:
    return f"task-{uuid.uuid4().hex[:8]}"


# Options and configuration errors


def test_plugin_declares_every_option_of_the_factory() -> None:
    (info,) = pyncette_backends()
    accepted = {
        name
        for name, parameter in inspect.signature(redis_repository.__wrapped__).parameters.items()  # type: ignore[attr-defined]
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert info.name == "redis"
    assert info.distribution == "pyncette-redis"
    assert info.load_factory() is redis_repository
    assert set(info.options) == accepted
    assert {"redis_url", "redis_namespace", "redis_timeout", "redis_pool_size", "redis_client"} <= accepted
    assert {"concurrency_limit", "batch_size"} <= accepted


def test_entry_point_is_registered() -> None:
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="pyncette") if ep.name == "redis"]
    assert entry_point.value == "pyncette.redis.plugin"
    assert entry_point.load().pyncette_backends is pyncette_backends


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"redis_namespace": "has space"}, "redis_namespace"),
        ({"redis_namespace": "{tag}"}, "redis_namespace"),
        ({"redis_namespace": "a:b"}, "redis_namespace"),
        ({"redis_namespace": ""}, "redis_namespace"),
        ({"redis_url": "http://localhost"}, "redis_url"),
        ({"redis_url": "localhost:6379"}, "redis_url"),
        ({"redis_timeout": 0}, "redis_timeout"),
        ({"redis_timeout": "5"}, "redis_timeout"),
        ({"redis_pool_size": 1}, "redis_pool_size"),
        ({"redis_client": "redis://localhost"}, "redis_client"),
    ],
)
async def test_invalid_options_fail_at_start_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        async with redis_repository(**options):
            pass


async def test_unreachable_server_fails_at_start_with_backend_error(private_redis: PrivateRedis) -> None:
    port = private_redis.port
    private_redis.stop()
    url = f"redis://user:{PASSWORD}@127.0.0.1:{port}/0"
    with pytest.raises(BackendError, match="redis_url") as caught:
        async with redis_repository(redis_url=url, redis_timeout=2):
            pass
    assert PASSWORD not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


async def test_wrong_credentials_fail_at_start_without_leaking_the_password(
    start_private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_private_redis("--requirepass", "the-right-one")
    for url in (f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", f"redis://127.0.0.1:{server.port}/0?password={PASSWORD}"):
        with pytest.raises(ConfigurationError, match=r"redis_url.*authentication") as caught:
            async with redis_repository(redis_url=url):
                pass
        assert PASSWORD not in str(caught.value)
        assert caught.value.__cause__ is None or PASSWORD not in str(caught.value.__cause__)
    async with redis_repository(redis_url=f"redis://:the-right-one@127.0.0.1:{server.port}/0") as repository:
        assert await repository.get_task(TaskKey("x")) is None
    assert PASSWORD not in caplog.text


async def test_wrong_database_fails_at_start(private_redis: PrivateRedis) -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        async with redis_repository(redis_url=f"redis://127.0.0.1:{private_redis.port}/9999"):
            pass


def test_redact_url() -> None:
    assert redact_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert redact_url("rediss://:pw@host") == "rediss://***@host"
    assert redact_url("redis://token@host") == "redis://***@host"
    assert redact_url("unix:///tmp/r.sock?db=1&password=pw") == "unix:///tmp/r.sock?db=1&password=***"
    assert redact_url("redis://host:6379") == "redis://host:6379"
    assert redact_url("rediss://:pw@host/0?ssl_ca_certs=/etc/ca.pem") == "rediss://***@host/0?ssl_ca_certs=/etc/ca.pem"


async def test_unknown_and_common_options_are_accepted(redis_url: str, namespace: str) -> None:
    async with redis_repository(
        redis_url=redis_url, redis_namespace=namespace, concurrency_limit=7, batch_size=10, postgres_url="ignored", foo=1
    ) as repository:
        assert isinstance(repository, RedisRepository)
        pool = repository._client.connection_pool
        assert pool.max_connections == 7 + redis_constants.DEFAULT_POOL_EXTRA
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace, redis_pool_size=3) as repository:
        assert repository._client.connection_pool.max_connections == 3


async def test_unix_socket_url(start_private_redis: Any, tmp_path: Any) -> None:
    socket_path = tmp_path / "redis.sock"
    start_private_redis("--unixsocket", str(socket_path))
    async with redis_repository(redis_url=f"unix://{socket_path}?db=0") as repository:
        await repository.register_tasks(T0, [reg(TaskKey("unix", "a"))])
        state = await repository.get_task(TaskKey("unix", "a"))
        assert state is not None
        assert state.next_run == T0


# Client ownership


async def test_a_client_passed_in_is_not_closed(redis_url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with redis_repository(redis_client=client, redis_namespace=namespace) as repository:
            await repository.register_tasks(T0, [reg(TaskKey(scope(), "a"))])
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_a_client_made_by_the_backend_is_closed(redis_url: str, namespace: str, raw_client: aioredis.Redis) -> None:
    name = f"pyncette-{uuid.uuid4().hex[:8]}"

    async def connections() -> int:
        return sum(1 for entry in await raw_client.client_list() if entry.get("name") == name)

    async with redis_repository(redis_url=f"{redis_url}?client_name={name}", redis_namespace=namespace) as repository:
        repository.set_wakeup_callback(lambda task, when: None)
        await repository.wait_subscribed()
        await repository.get_task(TaskKey(scope(), "a"))
        assert await connections() >= 2
    assert await connections() == 0


# Key layout and layout version


async def test_key_layout_shares_one_hash_tag_per_scope(redis_url: str, namespace: str) -> None:
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        partitions = [f"{scope()}:{index}" for index in range(8)] + ["odd}scope%7D"]
        for task in partitions:
            await repository.register_tasks(T0, [reg(TaskKey(task, "a")), reg(TaskKey(task, "b"))])
        slots_by_scope = []
        for task in partitions:
            keys = repository.scope_keys(task)
            slots = {redis.crc.key_slot(key.encode()) for key in keys}
            assert len(slots) == 1, keys
            slots_by_scope.append(slots.pop())
        assert len(set(slots_by_scope)) > 1, "partitions must spread over cluster slots"
        assert repository.scope_keys("odd}scope%7D") != repository.scope_keys("odd%7Dscope}")
        with redis.Redis.from_url(redis_url) as sync:
            stored = {key.decode() for key in namespace_keys(sync, namespace)}
        expected = {key for task in partitions for key in repository.scope_keys(task)} | {repository.layout_key}
        assert stored == expected


async def test_layout_version_is_written_once_and_a_foreign_version_is_refused(
    redis_url: str, namespace: str, raw_client: aioredis.Redis
) -> None:
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        layout_key = repository.layout_key
    assert await raw_client.get(layout_key) == redis_constants.LAYOUT_VERSION.encode()
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace):
        pass
    await raw_client.set(layout_key, "99")
    with pytest.raises(SchemaVersionError, match="redis_namespace"):
        async with redis_repository(redis_url=redis_url, redis_namespace=namespace):
            pass


async def test_fencing_tokens_and_times_are_exact_at_microsecond_scale(redis_url: str, namespace: str) -> None:
    now = datetime.datetime(2255, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)  # micros just below 2**53
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        key = TaskKey(scope(), "a")
        await repository.register_tasks(now, [reg(key, next_run=now)])
        (claimed,) = (await repository.claim_due(now, key.task, owner="w", lease_duration=LEASE, limit=1)).claimed
        assert claimed.lease.token == to_micros(now)
        assert claimed.state.next_run == now
        assert claimed.lease.locked_until == now + LEASE
        state = await repository.get_task(key)
        assert state == claimed.state


# Scripts and batching


async def test_script_flush_is_survived(private_redis: PrivateRedis) -> None:
    async with redis_repository(redis_url=private_redis.url) as repository:
        task = scope()
        await repository.register_tasks(T0, [reg(TaskKey(task, "a"))])
        with redis.Redis.from_url(private_redis.url) as sync:
            sync.script_flush()
        (claimed,) = (await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=5)).claimed
        with redis.Redis.from_url(private_redis.url) as sync:
            sync.script_flush()
        completion = Completion(key=claimed.state.key, lease=claimed.lease, next_run=T0 + SECOND, data="{}")
        second = Completion(key=TaskKey(f"{task}-2", "b"), lease=claimed.lease, next_run=None, data="{}")
        assert await repository.complete_tasks(T0, [completion, second]) == [True, False]  # a pipeline
        with redis.Redis.from_url(private_redis.url) as sync:
            sync.script_flush()
        assert (
            await repository.register_tasks(T0, [reg(TaskKey(task, "b")), reg(TaskKey(f"{task}-3", "c"))])
            == [RegisterOutcome.CREATED] * 2
        )


async def test_scripts_are_loaded_once_and_called_by_sha(private_redis: PrivateRedis) -> None:
    async with redis_repository(redis_url=private_redis.url) as repository:
        with redis.Redis.from_url(private_redis.url) as sync:
            sync.config_resetstat()
            task = scope()
            await repository.register_tasks(T0, [reg(TaskKey(task, "a"))])
            await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=5)
            await repository.get_task(TaskKey(task, "a"))
            stats = sync.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3
    assert "cmdstat_eval" not in stats
    assert "cmdstat_script|load" not in stats


async def test_claim_cost_grows_with_due_instances_not_stored_ones(private_redis: PrivateRedis) -> None:
    async def commands_of_one_claim(stored: int, due: int) -> int:
        async with redis_repository(redis_url=private_redis.url) as repository:
            task = scope()
            later = [reg(TaskKey(task, f"later-{i:05d}"), next_run=T0 + 3600 * SECOND) for i in range(stored)]
            await repository.register_tasks(T0, [*later, *(reg(TaskKey(task, f"due-{i}")) for i in range(due))])
            with redis.Redis.from_url(private_redis.url) as sync:
                sync.config_resetstat()
                result = await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=100)
                stats = sync.info("commandstats")
            assert len(result.claimed) == due
            # commands run inside the script are counted too; EVALSHA itself is one of them
            return sum(int(entry["calls"]) for entry in stats.values())

    small, large = await commands_of_one_claim(10, 3), await commands_of_one_claim(5000, 3)
    assert small == large
    assert await commands_of_one_claim(5000, 6) > large


class RoundTrips:
    """Counts writes of packed commands to the server: one per round trip (pipelines included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = aioredis_connection.AbstractConnection.send_packed_command

        async def counting(connection: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            await original(connection, command, check_health)

        monkeypatch.setattr(aioredis_connection.AbstractConnection, "send_packed_command", counting)


async def test_bulk_register_claim_and_complete_take_one_round_trip_each(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        tasks = [scope() for _ in range(3)]
        await repository.get_task(TaskKey(tasks[0], "warm-up"))  # open the connection first
        trips = RoundTrips(monkeypatch)
        registrations = [reg(TaskKey(tasks[0], f"i{index:05d}")) for index in range(1200)]
        registrations += [reg(TaskKey(task, "x")) for task in tasks[1:]]
        outcomes = await repository.register_tasks(T0, registrations)
        assert outcomes == [RegisterOutcome.CREATED] * 1202
        assert trips.count == 1

        trips.count = 0
        result = await repository.claim_due(T0, tasks[0], owner="w", lease_duration=LEASE, limit=1000)
        assert len(result.claimed) == 1000
        assert result.more
        assert trips.count == 1

        trips.count = 0
        others = [
            (await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=5)).claimed[0] for task in tasks[1:]
        ]
        trips.count = 0
        completions = [
            Completion(key=c.state.key, lease=c.lease, next_run=None if i % 2 else T0 + SECOND, data="{}")
            for i, c in enumerate([*result.claimed, *others])
        ]
        assert await repository.complete_tasks(T0, completions) == [True] * 1002
        assert trips.count == 1


# Faults: lost replies, dropped connections, restarts


async def test_claim_whose_reply_was_lost_returns_the_same_claims_on_retry(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        task = scope()
        await repository.register_tasks(T0, [reg(TaskKey(task, f"i{index}")) for index in range(5)])
        script = repository._scripts["claim"]
        calls = []

        async def lose_first_reply(*args: Any, **kwargs: Any) -> Any:
            reply = await script(*args, **kwargs)
            calls.append(kwargs["args"][-1])
            if len(calls) == 1:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            return reply

        monkeypatch.setitem(repository._scripts, "claim", lose_first_reply)
        result = await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=3)
        assert calls == ["0", "1"]
        assert len(result.claimed) == 3
        for claimed in result.claimed:
            assert await repository.get_task(claimed.state.key) == claimed.state
        monkeypatch.setitem(repository._scripts, "claim", script)
        rest = await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=10)
        assert len(rest.claimed) == 2  # nothing was claimed twice, nothing is stranded


async def test_completion_whose_reply_was_lost_is_reported_applied_on_retry(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with redis_repository(redis_url=redis_url, redis_namespace=namespace) as repository:
        task = scope()
        await repository.register_tasks(T0, [reg(TaskKey(task, "keep")), reg(TaskKey(task, "once"))])
        claimed = (await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=2)).claimed
        call_many = repository._call_many
        calls = 0

        async def lose_first_reply(batch: Any) -> Any:
            nonlocal calls
            calls += 1
            replies = await call_many(batch)
            if calls == 1:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            return replies

        monkeypatch.setattr(repository, "_call_many", lose_first_reply)
        completions = [
            Completion(
                key=c.state.key, lease=c.lease, next_run=T0 + SECOND if c.state.key.instance == "keep" else None, data="{}"
            )
            for c in claimed
        ]
        assert await repository.complete_tasks(T0, completions) == [True, True]
        assert calls == 2
        monkeypatch.setattr(repository, "_call_many", call_many)
        # without the retry flag, a completion that already applied is refused
        assert await repository.complete_tasks(T0, completions) == [False, False]


async def test_dropped_connections_are_recovered_by_the_next_operation(redis_url: str, namespace: str) -> None:
    host, port = "127.0.0.1", redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("port", 6379)
    with TcpProxy(host, port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        async with redis_repository(redis_url=url, redis_namespace=namespace, redis_timeout=5) as repository:
            task = scope()
            await repository.register_tasks(T0, [reg(TaskKey(task, f"i{index}")) for index in range(10)])
            assert proxy.cut() >= 1
            claimed = (await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=10)).claimed
            assert len(claimed) == 10
            assert proxy.cut() >= 1
            completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in claimed]
            assert await repository.complete_tasks(T0, completions) == [True] * 10

            proxy.down("refuse")
            with pytest.raises(BackendError, match="claim_due") as caught:
                await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=10)
            assert isinstance(caught.value.__cause__, redis.exceptions.RedisError | OSError)
            proxy.up()
            assert (await repository.list_tasks(task, limit=10)).states == ()


async def test_server_restart_is_survived(private_redis: PrivateRedis) -> None:
    async with redis_repository(redis_url=private_redis.url, redis_timeout=5) as repository:
        task = scope()
        await repository.register_tasks(T0, [reg(TaskKey(task, "a"))])
        private_redis.restart()  # empty afterwards: nothing is persisted, scripts are gone
        assert await repository.register_tasks(T0, [reg(TaskKey(task, "a"))]) == [RegisterOutcome.CREATED]
        assert len((await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=5)).claimed) == 1


async def test_operation_errors_never_contain_the_password(start_private_redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = start_private_redis("--requirepass", PASSWORD)
    async with redis_repository(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", redis_timeout=2) as repository:
        server.stop()
        with pytest.raises(BackendError) as caught:
            await repository.get_task(TaskKey("x"))
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caplog.text


# Wake-ups


async def test_wakeups_are_pushed_when_a_scope_gets_an_earlier_instance(redis_url: str, namespace: str) -> None:
    """Register, resume and complete publish a wake-up only for a time before the scope's earliest one.

    Workers already plan to poll a scope no later than its earliest time, so a later one needs no
    wake-up. Messages arrive in order: receiving the expected wake-up proves that the operations
    before it published nothing.
    """
    received: list[tuple[str, datetime.datetime]] = []
    arrived = anyio.Event()

    def callback(task: str, when: datetime.datetime) -> None:
        received.append((task, when))
        arrived.set()

    async def next_wakeup() -> tuple[str, datetime.datetime]:
        nonlocal arrived
        with anyio.fail_after(10):
            await arrived.wait()
        arrived = anyio.Event()
        return received.pop(0)

    async with (
        redis_repository(redis_url=redis_url, redis_namespace=namespace) as listener,
        redis_repository(redis_url=redis_url, redis_namespace=namespace) as writer,
    ):
        listener.set_wakeup_callback(callback)
        await listener.wait_subscribed()
        task = f"{scope()}:3"
        await writer.register_tasks(T0, [reg(TaskKey(task, "b"), T0 + 5 * SECOND), reg(TaskKey(task, "a"), T0 + 2 * SECOND)])
        assert await next_wakeup() == (task, T0 + 2 * SECOND), "the first instances of a scope wake it"
        await writer.register_tasks(T0, [reg(TaskKey(task, "c"), T0 + 7 * SECOND)])  # later than a: silent
        await writer.register_tasks(T0, [reg(TaskKey(task, "d"), T0 + 1 * SECOND)])
        assert await next_wakeup() == (task, T0 + 1 * SECOND)

        await writer.set_paused(T0, TaskKey(task, "a"), True)
        await writer.set_paused(T0, TaskKey(task, "a"), False, next_run=T0 + 3 * SECOND)  # later than d: silent
        await writer.set_paused(T0, TaskKey(task, "d"), True)
        await writer.set_paused(T0, TaskKey(task, "d"), False, next_run=T0 + 2 * SECOND)  # earlier than a
        assert await next_wakeup() == (task, T0 + 2 * SECOND)

        (first,) = (await writer.claim_due(T0 + 3 * SECOND, task, owner="w", lease_duration=LEASE, limit=1)).claimed
        assert first.state.key.instance == "d"
        later = Completion(key=first.state.key, lease=first.lease, next_run=T0 + 9 * SECOND, data="{}")
        assert await writer.complete_tasks(T0 + 3 * SECOND, [later]) == [True]  # later than a: silent
        (second,) = (await writer.claim_due(T0 + 3 * SECOND, task, owner="w", lease_duration=LEASE, limit=1)).claimed
        assert second.state.key.instance == "a"
        sooner = Completion(key=second.state.key, lease=second.lease, next_run=T0 + 4 * SECOND, data="{}")
        assert await writer.complete_tasks(T0 + 3 * SECOND, [sooner]) == [True]  # earlier than b
        assert await next_wakeup() == (task, T0 + 4 * SECOND)
        assert received == []


async def test_wakeup_subscriber_reconnects_after_a_dropped_connection(redis_url: str, namespace: str) -> None:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("port", 6379)
    received: list[str] = []
    arrived = anyio.Event()

    def callback(task: str, when: datetime.datetime) -> None:
        received.append(task)
        arrived.set()

    with TcpProxy("127.0.0.1", port) as proxy:
        async with (
            redis_repository(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_namespace=namespace) as listener,
            redis_repository(redis_url=redis_url, redis_namespace=namespace) as writer,
        ):
            listener.set_wakeup_callback(callback)
            await listener.wait_subscribed(1)
            proxy.cut()
            await listener.wait_subscribed(2)
            task = scope()
            await writer.register_tasks(T0, [reg(TaskKey(task, "a"))])
            with anyio.fail_after(10):
                await arrived.wait()
            assert received == [task]


# Least privileges (the ACL documented in docs/backends/redis.md)

LEAST_PRIVILEGE_COMMANDS = (
    "+ping +get +time +evalsha +script|load +subscribe +unsubscribe +hget +hset +hdel +zadd +zrem +zrange +zrangebyscore "
    "+zrangebylex +zcount +publish"
)


async def test_documented_least_privilege_acl_is_enough(private_redis: PrivateRedis) -> None:
    namespace = "app1"
    with redis.Redis.from_url(private_redis.url) as admin:
        admin.set(f"{{{namespace}}}:layout", redis_constants.LAYOUT_VERSION)  # pre-created by the operator
        admin.execute_command(
            "ACL", "SETUSER", "scheduler", "on", ">pw", "resetkeys", f"~{{{namespace}:*", f"~{{{namespace}}}:layout",
            "resetchannels", f"&{namespace}:wakeup", "-@all", *LEAST_PRIVILEGE_COMMANDS.split(),
        )  # fmt: skip
    url = f"redis://scheduler:pw@127.0.0.1:{private_redis.port}/0"
    received = anyio.Event()
    async with redis_repository(redis_url=url, redis_namespace=namespace) as repository:
        repository.set_wakeup_callback(lambda task, when: received.set())
        await repository.wait_subscribed()
        task = f"{scope()}:0"
        await repository.register_tasks(T0, [reg(TaskKey(task, "a")), reg(TaskKey(task, "b"))])
        with anyio.fail_after(10):
            await received.wait()
        (first, second) = (await repository.claim_due(T0, task, owner="w", lease_duration=LEASE, limit=5)).claimed
        assert await repository.extend_lease(T0, first.state.key, first.lease, LEASE) is not None
        done = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in (first, second)]
        assert await repository.complete_tasks(T0, done) == [True, True]
        await repository.register_tasks(T0, [reg(TaskKey(task, "c"))])
        assert (await repository.count_due(T0, task)).count == 1
        assert await repository.set_paused(T0, TaskKey(task, "c"), True)
        assert [s.key.instance for s in (await repository.list_tasks(task, limit=5)).states] == ["c"]
        assert await repository.server_time() is not None
        assert await repository.unregister_task(T0, TaskKey(task, "c"))
    with pytest.raises(ConfigurationError, match="redis_url"):
        async with redis_repository(redis_url=url, redis_namespace="other-app"):
            pass


# TLS (docs/backends/redis.md, "TLS")


async def test_rediss_url_with_the_ca_schedules_and_runs_a_task(tls_redis: TlsRedis) -> None:
    app = Pyncette(backend="redis", redis_url=tls_redis.url(tls_redis.ca_cert), redis_namespace="tls")
    ran: list[str] = []

    @app.dynamic_task()
    async def job(context: Context) -> None:
        ran.append(context.task.name)

    start = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    async with app.create(clock=FakeClock(start)) as context:
        await context.schedule_task(job, "over-tls", execute_at=start + SECOND)
        assert await run_until(context, start + 10 * SECOND) == 1
    assert ran == ["over-tls"]
    plain = redis.Redis(host="127.0.0.1", port=tls_redis.server.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        plain.ping()  # the server speaks TLS only: the run above went over TLS


async def test_rediss_url_with_a_wrong_ca_fails_at_start_naming_the_option(tls_redis: TlsRedis) -> None:
    with pytest.raises(
        ConfigurationError, match=r"redis_url: the TLS certificate .* failed verification; check ssl_ca_certs"
    ) as caught:
        async with redis_repository(redis_url=tls_redis.url(tls_redis.other_ca_cert), redis_timeout=5):
            pass
    assert "certificate verify failed" in str(caught.value)
    assert f"ssl_ca_certs={tls_redis.other_ca_cert}" in str(caught.value), "the message shows which CA file was used"
