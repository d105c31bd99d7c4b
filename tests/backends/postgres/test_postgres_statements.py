"""What the PostgreSQL server does with the backend's statements: prepared once, and a claim reads only due rows."""

from __future__ import annotations

import datetime
import json
from typing import Any, AsyncIterator

import asyncpg
import pytest

from pyncette.model import Completion, Registration, TaskKey, to_micros
from pyncette.postgres import PostgresRepository, postgres_repository

pytestmark = pytest.mark.anyio

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def registration(scope: str, instance: str, next_run: datetime.datetime = T0) -> Registration:
    return Registration(key=TaskKey(scope, instance), spec="{}", data="{}", next_run=next_run)


@pytest.fixture
async def one_connection_pool(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of exactly one connection, so that its session sees every statement the backend prepares."""
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def prepared_on_table(pool: asyncpg.Pool, table_name: str) -> list[str]:
    """The statements prepared in the pool's only session that touch the table."""
    rows = await pool.fetch(
        "SELECT statement FROM pg_prepared_statements WHERE strpos(statement, $1) > 0 ORDER BY statement", f'"{table_name}"'
    )
    return [row["statement"] for row in rows]


async def every_operation(repository: PostgresRepository, now: datetime.datetime, round_: int) -> None:
    """Each operation of the contract at least once, in a scope of its own, with a batch size that differs per round."""
    scope = f"s{round_}"
    names = [f"i{i}" for i in range(round_ + 1)]
    first = TaskKey(scope, names[0])
    await repository.register_tasks(now, [registration(scope, name, now) for name in names])
    await repository.register_tasks(now, [Registration(key=first, spec="{}", data="{}", next_run=now, force=True)])
    claimed = (await repository.claim_due(now, scope, owner="w", lease_duration=LEASE, limit=100)).claimed
    assert len(claimed) == len(names)
    assert await repository.extend_lease(now, claimed[0].state.key, claimed[0].lease, LEASE) is not None
    completions = [
        Completion(key=c.state.key, lease=c.lease, next_run=now + SECOND if c.state.key == first else None, data="{}")
        for c in claimed
    ]
    assert all(await repository.complete_tasks(now, completions))
    again = (await repository.claim_due(now + SECOND, scope, owner="w", lease_duration=LEASE, limit=1, instance=names[0])).claimed
    assert len(again) == 1
    assert await repository.set_paused(now, first, True)
    assert await repository.get_task(first) is not None
    assert len((await repository.list_tasks(scope, limit=2)).states) == 1
    assert (await repository.count_due(now, scope)).count == 0
    assert await repository.unregister_task(now, first)


async def test_statements_are_prepared_once_per_connection(one_connection_pool: asyncpg.Pool, table_name: str) -> None:
    async with postgres_repository(postgres_pool=one_connection_pool, postgres_table_name=table_name) as repository:
        await every_operation(repository, T0, 1)
        after_first_round = await prepared_on_table(one_connection_pool, table_name)
        for round_ in range(2, 8):
            await every_operation(repository, T0 + round_ * 60 * SECOND, round_)
        after_many_rounds = await prepared_on_table(one_connection_pool, table_name)
    # Register (plain and forced), claim (any and one instance), extend, complete, set_paused, get,
    # list, count_due, unregister: each is one fixed statement text, whatever the batch size.
    assert len(after_first_round) >= 11
    assert len(set(after_first_round)) == len(after_first_round)
    assert after_many_rounds == after_first_round


async def plan_of_claim(
    admin: asyncpg.Connection, repository: PostgresRepository, plan_mode: str, now: datetime.datetime, limit: int
) -> dict[str, Any]:
    """Run the backend's own claim statement under ``EXPLAIN (ANALYZE, BUFFERS)`` and roll it back.

    ``plan_mode`` is ``force_custom_plan`` (a plan for these parameter values, as the first runs of
    a prepared statement get) or ``force_generic_plan`` (the plan PostgreSQL may switch a prepared
    statement to after five runs).
    """
    transaction = admin.transaction()
    await transaction.start()
    try:
        await admin.execute(f"SET LOCAL plan_cache_mode = {plan_mode}")
        types = "text, timestamptz, int, text, timestamptz, bigint"
        await admin.execute(f"PREPARE pyncette_claim ({types}) AS {repository._sql.claim}")
        # EXECUTE takes no bind parameters; these literals are the test's own values.
        arguments = f"'big', '{now.isoformat()}', {limit}, 'w', '{(now + LEASE).isoformat()}', {to_micros(now)}"
        explained = await admin.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE pyncette_claim({arguments})")
    finally:
        await transaction.rollback()
        await admin.execute("DEALLOCATE ALL")
    plan: dict[str, Any] = json.loads(explained)[0]
    return plan


def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan that reads a relation."""
    found = [node] if "Relation Name" in node or "Index Name" in node else []
    for child in node.get("Plans", []):
        found.extend(scans(child))
    return found


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_claim_reads_only_due_rows(postgres_url: str, table_name: str, admin: asyncpg.Connection, plan_mode: str) -> None:
    """With 20,005 rows stored in the scope and 5 due, the claim walks the due index over a handful of rows."""
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        await admin.execute(
            f"""INSERT INTO "{table_name}" (task, instance, spec, data, next_run)
                SELECT 'big', 'future-' || i, '{{}}', '{{}}', $1::timestamptz + i * interval '1 second'
                FROM generate_series(1, 20000) AS i""",
            T0,
        )
        await admin.execute(
            f"""INSERT INTO "{table_name}" (task, instance, spec, data, next_run)
                SELECT 'other', 'due-' || i, '{{}}', '{{}}', $1::timestamptz - i * interval '1 second'
                FROM generate_series(1, 5000) AS i""",
            T0,
        )
        await repository.register_tasks(T0, [registration("big", f"due-{i}", T0 - i * SECOND) for i in range(5)])
        await admin.execute(f'ANALYZE "{table_name}"')
        table_pages = await admin.fetchval("SELECT relpages FROM pg_class WHERE oid = to_regclass($1)", table_name)

        plan = await plan_of_claim(admin, repository, plan_mode, T0, 100)

        claimed = await repository.claim_due(T0, "big", owner="w", lease_duration=LEASE, limit=100)
        assert len(claimed.claimed) == 5
        assert claimed.next_due == T0 + SECOND

    root = plan["Plan"]
    assert root["Actual Rows"] == 5, "the explained claim claimed the 5 due instances"
    nodes = scans(root)
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], f"a claim scanned the table: {nodes}"
    # The due rows are found through the due index; the primary key only serves the claimed rows' updates.
    indexes = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert f"{table_name}_due_idx" in indexes
    assert indexes <= {f"{table_name}_due_idx", f"{table_name}_pkey"}
    # Rows looked at: those returned plus those a filter threw away, per loop of each scan.
    examined = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in nodes)
    assert examined < 50, f"a claim of 5 due rows among 25,005 examined {examined}: {nodes}"
    buffers = root["Shared Hit Blocks"] + root["Shared Read Blocks"]
    assert buffers < table_pages / 4, f"a claim touched {buffers} pages of a table of {table_pages}"
