"""The Redis backend on a private three-node Redis Cluster (slots split in thirds).

The whole conformance suite runs through ``redis_cluster=True``; the other tests show that a
scope's keys share one slot while scopes spread over the nodes, that pipelined completions and
wake-ups work across nodes, that a ``RedisCluster`` passed in is used and left open, and that the
real scheduler drains a partitioned task's instances exactly once.
"""

from __future__ import annotations

import collections
import datetime
import uuid
from typing import Any, AsyncIterator

import anyio
import pytest
import redis
import redis.asyncio.cluster as aioredis_cluster
import redis.crc
from redis._parsers.base import BaseParser

from pyncette import Context, Pyncette, Task
from pyncette.errors import ConfigurationError
from pyncette.model import ClaimedTask, Completion, Registration, TaskKey
from pyncette.pyncette import PyncetteContext
from pyncette.redis import RedisRepository, redis_repository
from pyncette.redis import constants as redis_constants
from pyncette.redis.repository import _is_transient
from pyncette.testing import FakeClock, run_until
from pyncette.testing.conformance import RepositoryConformance, RepositoryFactory
from tests.backends.redis.conftest import CLUSTER_SLOTS, PrivateCluster, PrivateRedis
from tests.backends.redis.test_redis_backend import LEAST_PRIVILEGE_COMMANDS

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)
CLUSTER_EXTRA_COMMANDS = "+cluster|slots +command"
"""What a cluster client needs beyond the standalone ACL (documented in docs/backends/redis.md)."""


@pytest.fixture
def cluster_namespace() -> str:
    """A fresh namespace per test: the module's cluster is shared and never cleaned between tests."""
    return f"pyncette-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def cluster_repository(redis_cluster: PrivateCluster, cluster_namespace: str) -> AsyncIterator[RedisRepository]:
    async with redis_repository(redis_url=redis_cluster.url, redis_cluster=True, redis_namespace=cluster_namespace) as repo:
        yield repo


def node_of(cluster: PrivateCluster, key: str) -> int:
    """The index in ``cluster.nodes`` of the node serving ``key``'s slot (thirds, as assigned)."""
    share = CLUSTER_SLOTS // len(cluster.nodes)
    return min(redis.crc.key_slot(key.encode()) // share, len(cluster.nodes) - 1)


def scopes_on_every_node(repository: RedisRepository, cluster: PrivateCluster) -> list[str]:
    """One scope name per node, each hashing to a slot that node serves."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < len(cluster.nodes):
        name = f"scope-{index}"
        found.setdefault(node_of(cluster, repository.scope_keys(name)[0]), name)
        index += 1
    return [found[node] for node in range(len(cluster.nodes))]


class TestRedisClusterConformance(RepositoryConformance):
    @pytest.fixture
    def repository_factory(self, redis_cluster: PrivateCluster, cluster_namespace: str) -> RepositoryFactory:
        return lambda: redis_repository(redis_url=redis_cluster.url, redis_cluster=True, redis_namespace=cluster_namespace)


async def test_the_cluster_serves_slots_from_three_nodes(redis_cluster: PrivateCluster) -> None:
    client = aioredis_cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        await client.initialize()
        assert len(client.get_primaries()) == 3
        for key in ("{a}", "{b}", "{c}", "{d}"):
            node = client.get_node_from_key(key)
            assert node is not None
            assert node.port == redis_cluster.nodes[node_of(redis_cluster, key)].port
    finally:
        await client.aclose()


async def test_scopes_keep_one_slot_each_and_spread_over_the_nodes(
    redis_cluster: PrivateCluster, cluster_repository: RedisRepository, cluster_namespace: str
) -> None:
    scopes = scopes_on_every_node(cluster_repository, redis_cluster)
    await cluster_repository.register_tasks(
        T0, [Registration(key=TaskKey(s, name), spec="{}", data="{}", next_run=T0) for s in scopes for name in "ab"]
    )
    keys_by_node: dict[int, set[str]] = collections.defaultdict(set)
    for index, node in enumerate(redis_cluster.nodes):
        with redis.Redis(host="127.0.0.1", port=node.port) as client:
            keys_by_node[index] = {key.decode() for key in client.scan_iter(match=f"{{{cluster_namespace}:*", count=1000)}
    assert all(keys_by_node[index] for index in range(3)), "each node holds some scope's keys"
    for s in scopes:
        keys = cluster_repository.scope_keys(s)
        assert len({redis.crc.key_slot(key.encode()) for key in keys}) == 1
        holders = [index for index, stored in keys_by_node.items() if set(keys[:5]) & stored]
        assert len(holders) == 1, f"all keys of scope {s} live on one node"


async def test_completions_of_scopes_on_different_nodes_are_pipelined(
    redis_cluster: PrivateCluster, cluster_repository: RedisRepository
) -> None:
    scopes = scopes_on_every_node(cluster_repository, redis_cluster)
    await cluster_repository.register_tasks(
        T0, [Registration(key=TaskKey(s, str(i)), spec="{}", data="{}", next_run=T0) for s in scopes for i in range(3)]
    )
    claimed: list[ClaimedTask] = []
    for s in scopes:
        result = await cluster_repository.claim_due(T0, s, owner="w", lease_duration=LEASE, limit=10)
        assert len(result.claimed) == 3
        claimed += result.claimed
    completions = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data='{"n": 1}') for c in claimed]
    assert await cluster_repository.complete_tasks(T0, completions) == [True] * 9
    for c in claimed:
        state = await cluster_repository.get_task(c.state.key)
        assert state is not None
        assert (state.next_run, state.data, state.locked_by) == (T0 + SECOND, '{"n": 1}', None)


async def test_completions_survive_a_script_flush_on_every_node(
    redis_cluster: PrivateCluster, cluster_repository: RedisRepository
) -> None:
    """NOSCRIPT replies inside the per-node pipelines are answered by loading the scripts again."""
    scopes = scopes_on_every_node(cluster_repository, redis_cluster)
    await cluster_repository.register_tasks(
        T0, [Registration(key=TaskKey(s, "x"), spec="{}", data="{}", next_run=T0) for s in scopes]
    )
    claimed = [(await cluster_repository.claim_due(T0, s, owner="w", lease_duration=LEASE, limit=1)).claimed[0] for s in scopes]
    for node in redis_cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port) as client:
            client.script_flush()
    completions = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in claimed]
    assert await cluster_repository.complete_tasks(T0, completions) == [True] * 3
    assert [await cluster_repository.get_task(c.state.key) for c in claimed] == [None] * 3


async def test_wakeups_from_every_node_reach_the_subscriber(redis_cluster: PrivateCluster, cluster_namespace: str) -> None:
    """The subscriber listens on one node; PUBLISH from a script on any node is broadcast to it."""
    received: list[str] = []
    arrived = anyio.Event()

    def callback(task: str, when: datetime.datetime) -> None:
        received.append(task)
        if len(received) == 3:
            arrived.set()

    options: dict[str, Any] = {"redis_url": redis_cluster.url, "redis_cluster": True, "redis_namespace": cluster_namespace}
    async with redis_repository(**options) as listener, redis_repository(**options) as writer:
        listener.set_wakeup_callback(callback)
        await listener.wait_subscribed()
        scopes = scopes_on_every_node(writer, redis_cluster)
        for s in scopes:
            await writer.register_tasks(T0, [Registration(key=TaskKey(s, "a"), spec="{}", data="{}", next_run=T0)])
        with anyio.fail_after(10):
            await arrived.wait()
        assert sorted(received) == sorted(scopes)


async def test_a_cluster_client_passed_in_is_used_and_not_closed(redis_cluster: PrivateCluster, cluster_namespace: str) -> None:
    client = aioredis_cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        async with redis_repository(redis_client=client, redis_namespace=cluster_namespace) as repository:
            await repository.register_tasks(T0, [Registration(key=TaskKey("passed-in", "a"), spec="{}", data="{}", next_run=T0)])
            assert (await repository.claim_due(T0, "passed-in", owner="w", lease_duration=LEASE, limit=5)).claimed
        assert await client.ping() is True
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"redis_cluster": "yes"}, "redis_cluster"),
        ({"redis_cluster": True, "redis_url": "unix:///tmp/redis.sock"}, "redis_url"),
        ({"redis_cluster": True, "redis_url": "redis://127.0.0.1:1/3"}, "redis_url"),
    ],
)
async def test_invalid_cluster_options_fail_at_start_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        async with redis_repository(**options):
            pass


async def test_redis_cluster_against_a_standalone_server_fails_at_start_naming_the_option(
    private_redis: PrivateRedis,
) -> None:
    with pytest.raises(ConfigurationError, match="redis_url") as caught:
        async with redis_repository(redis_url=private_redis.url.removesuffix("/0"), redis_cluster=True, redis_timeout=2):
            pass
    assert "cluster" in str(caught.value).lower()


async def test_the_scheduler_drains_a_partitioned_task_exactly_once(
    redis_cluster: PrivateCluster, cluster_namespace: str
) -> None:
    """Two workers, running side by side, drain a partitioned task spread over the three nodes.

    Small batches make the workers interleave their claims; each has its own fake clock, both
    driven over the same simulated minute.
    """
    ran: list[str] = []

    def worker() -> tuple[Pyncette, Task]:
        app = Pyncette(
            backend="redis", redis_url=redis_cluster.url, redis_cluster=True, redis_namespace=cluster_namespace, batch_size=3
        )

        @app.partitioned_task(partition_count=8)
        async def job(context: Context) -> None:
            ran.append(context.task.name)

        return app, job

    (app_a, job_a), (app_b, _) = worker(), worker()
    names = [f"instance-{i}" for i in range(40)]
    start = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    until = start + datetime.timedelta(minutes=1)
    executed: list[int] = []

    async def drive(context: PyncetteContext) -> None:
        executed.append(await run_until(context, until))

    async with app_a.create(clock=FakeClock(start)) as a, app_b.create(clock=FakeClock(start)) as b:
        await a.schedule_tasks([(job_a, name, {"execute_at": start + SECOND}) for name in names])
        async with anyio.create_task_group() as group:
            group.start_soon(drive, a)
            group.start_soon(drive, b)
        assert all([await a.get_task(job_a, name) is None for name in names]), "once-off instances are gone"
    assert sorted(ran) == sorted(names), "every instance ran exactly once"
    assert sum(executed) == len(names)


async def test_documented_least_privilege_acl_is_enough_on_a_cluster(
    redis_cluster: PrivateCluster, cluster_namespace: str
) -> None:
    """The standalone ACL of docs/backends/redis.md plus the documented cluster commands, on every node."""
    user = f"scheduler-{cluster_namespace}"
    with redis.RedisCluster.from_url(redis_cluster.url) as admin:
        admin.set(f"{{{cluster_namespace}}}:layout", redis_constants.LAYOUT_VERSION)  # pre-created by the operator
    for node in redis_cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port) as admin_node:
            admin_node.execute_command(
                "ACL", "SETUSER", user, "on", ">pw", "resetkeys", f"~{{{cluster_namespace}:*",
                f"~{{{cluster_namespace}}}:layout", "resetchannels", f"&{cluster_namespace}:wakeup", "-@all",
                *LEAST_PRIVILEGE_COMMANDS.split(), *CLUSTER_EXTRA_COMMANDS.split(),
            )  # fmt: skip
    url = f"redis://{user}:pw@127.0.0.1:{redis_cluster.nodes[0].port}"
    received = anyio.Event()
    async with redis_repository(redis_url=url, redis_cluster=True, redis_namespace=cluster_namespace) as repository:
        repository.set_wakeup_callback(lambda task, when: received.set())
        await repository.wait_subscribed()
        scopes = scopes_on_every_node(repository, redis_cluster)
        await repository.register_tasks(
            T0, [Registration(key=TaskKey(s, "a"), spec="{}", data="{}", next_run=T0) for s in scopes]
        )
        with anyio.fail_after(10):
            await received.wait()
        claimed = [(await repository.claim_due(T0, s, owner="w", lease_duration=LEASE, limit=5)).claimed[0] for s in scopes]
        assert await repository.extend_lease(T0, claimed[0].state.key, claimed[0].lease, LEASE) is not None
        done = [Completion(key=c.state.key, lease=c.lease, next_run=T0 + SECOND, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, done) == [True] * 3
        assert (await repository.count_due(T0 + SECOND, scopes[0])).count == 1
        assert await repository.set_paused(T0, TaskKey(scopes[1], "a"), True)
        assert [s.key.instance for s in (await repository.list_tasks(scopes[2], limit=5)).states] == ["a"]
        assert await repository.server_time() is not None
        assert await repository.unregister_task(T0, TaskKey(scopes[2], "a"))


@pytest.mark.parametrize(
    "reply", ["CLUSTERDOWN The cluster is down", "MASTERDOWN Link with MASTER is down", "TRYAGAIN Multiple keys"]
)
def test_cluster_failover_replies_are_retried(reply: str) -> None:
    """redis-py strips the error code from these replies, so they are recognised by their class."""
    error = BaseParser.parse_error(reply)  # the exception redis-py raises for this reply
    assert _is_transient(error)
