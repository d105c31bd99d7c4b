"""Schema creation, version checks and upgrades of the PostgreSQL backend."""

from __future__ import annotations

import contextlib
import datetime
import uuid
from typing import AsyncIterator

import anyio
import asyncpg
import pytest

from pyncette.errors import SchemaVersionError
from pyncette.model import Registration, TaskKey
from pyncette.postgres import PostgresRepository, constants, postgres_repository, schema
from pyncette.postgres.schema import TableName

pytestmark = pytest.mark.anyio

T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)


async def table_comment(admin: asyncpg.Connection, name: str) -> str | None:
    result: str | None = await admin.fetchval("SELECT obj_description(to_regclass($1), 'pg_class')", name)
    return result


async def test_table_and_due_index_are_created_with_version(
    postgres_url: str, table_name: str, admin: asyncpg.Connection
) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
        pass
    assert await table_comment(admin, table_name) == f"pyncette-postgres schema {constants.SCHEMA_VERSION}"
    index = await admin.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"{table_name}_due_idx")
    assert "(task, next_run)" in index
    assert "WHERE (NOT paused)" in index
    # A second start finds the current version and changes nothing.
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name, postgres_skip_table_create=True):
        pass


async def test_skip_table_create_refuses_a_missing_table(postgres_url: str, table_name: str, admin: asyncpg.Connection) -> None:
    with pytest.raises(SchemaVersionError, match="postgres_skip_table_create") as info:
        async with postgres_repository(
            postgres_url=postgres_url, postgres_table_name=table_name, postgres_skip_table_create=True
        ):
            pass
    assert "postgres_table_name" in str(info.value)
    assert await admin.fetchval("SELECT to_regclass($1)", table_name) is None


async def test_newer_schema_is_refused(postgres_url: str, table_name: str, admin: asyncpg.Connection) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
        pass
    await admin.execute(f"COMMENT ON TABLE \"{table_name}\" IS 'pyncette-postgres schema {constants.SCHEMA_VERSION + 1}'")
    with pytest.raises(SchemaVersionError, match="newer"):
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
            pass


async def test_foreign_or_pyncette_1_table_is_refused(postgres_url: str, table_name: str, admin: asyncpg.Connection) -> None:
    await admin.execute(f'CREATE TABLE "{table_name}" (name text PRIMARY KEY, task_spec json)')
    with pytest.raises(SchemaVersionError, match=r"1\.x") as info:
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
            pass
    assert "postgres_table_name" in str(info.value)
    columns = await admin.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = $1", table_name)
    assert sorted(row[0] for row in columns) == ["name", "task_spec"]


async def test_older_schema_is_upgraded_once(
    postgres_url: str, table_name: str, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
        await repository.register_tasks(T0, [Registration(key=TaskKey("s", "kept"), spec="{}", data="{}", next_run=T0)])
    version = constants.SCHEMA_VERSION
    monkeypatch.setattr(constants, "SCHEMA_VERSION", version + 1)
    monkeypatch.setattr(
        schema, "MIGRATIONS", {version: ("ALTER TABLE {table} ADD COLUMN upgraded boolean NOT NULL DEFAULT true",)}
    )
    with pytest.raises(SchemaVersionError, match="postgres_skip_table_create"):
        async with postgres_repository(
            postgres_url=postgres_url, postgres_table_name=table_name, postgres_skip_table_create=True
        ):
            pass
    # Several workers starting together: the advisory lock makes exactly one of them upgrade.
    async with started_together(3, postgres_url, table_name):
        pass
    assert await table_comment(admin, table_name) == f"pyncette-postgres schema {version + 1}"
    assert await admin.fetchval(f'SELECT upgraded FROM "{table_name}" WHERE instance = $1', "kept") is True


async def test_unknown_older_schema_is_refused(
    postgres_url: str, table_name: str, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
        pass
    monkeypatch.setattr(constants, "SCHEMA_VERSION", constants.SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match="cannot upgrade"):
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name):
            pass


async def test_concurrent_first_start_creates_the_table_once(postgres_url: str, table_name: str) -> None:
    async with started_together(6, postgres_url, table_name) as repositories:
        await repositories[0].register_tasks(T0, [Registration(key=TaskKey("s", "a"), spec="{}", data="{}", next_run=T0)])
        assert await repositories[5].get_task(TaskKey("s", "a")) is not None


@contextlib.asynccontextmanager
async def started_together(count: int, postgres_url: str, table_name: str) -> AsyncIterator[list[PostgresRepository]]:
    """Start ``count`` repositories concurrently, each in its own task, and keep them open meanwhile."""
    repositories: list[PostgresRepository] = []
    all_started, finished = anyio.Event(), anyio.Event()

    async def start() -> None:
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name=table_name) as repository:
            repositories.append(repository)
            if len(repositories) == count:
                all_started.set()
            await finished.wait()

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(start)
        with anyio.fail_after(30):
            await all_started.wait()
        try:
            yield repositories
        finally:
            finished.set()


@pytest.fixture
async def schema_name(admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"pyncette_test_schema_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA "{name}" CASCADE')


async def test_schema_qualified_table(postgres_url: str, schema_name: str, admin: asyncpg.Connection) -> None:
    qualified = f"{schema_name}.Tasks"
    async with postgres_repository(postgres_url=postgres_url, postgres_table_name=qualified) as repository:
        await repository.register_tasks(T0, [Registration(key=TaskKey("s", "a"), spec="{}", data="{}", next_run=T0)])
        assert repository.table == TableName(schema=schema_name, name="tasks")
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema_name}"."tasks"') == 1
    assert await table_comment(admin, f'"{schema_name}"."tasks"') == f"pyncette-postgres schema {constants.SCHEMA_VERSION}"


async def test_missing_schema_is_a_configuration_error(postgres_url: str) -> None:
    from pyncette.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="postgres_table_name"):
        async with postgres_repository(postgres_url=postgres_url, postgres_table_name="no_such_pyncette_schema.tasks"):
            pass


@pytest.fixture
async def least_privileged_url(postgres_url: str, admin: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role with no privilege of its own (PostgreSQL 15+ lets no one create in ``public``)."""
    role = f"pyncette_test_role_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}"')
    try:
        yield postgres_url.replace("postgres@", f"{role}@", 1)
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')


async def test_pre_created_table_works_with_least_privileges(
    postgres_url: str, least_privileged_url: str, table_name: str, admin: asyncpg.Connection
) -> None:
    from pyncette.errors import ConfigurationError

    if "postgres@" not in postgres_url:
        pytest.skip("needs the trust-authenticated postgres superuser URL to create a role")
    with pytest.raises(ConfigurationError, match="not allowed to create"):
        async with postgres_repository(postgres_url=least_privileged_url, postgres_table_name=table_name):
            pass
    # What the documentation tells a DBA to run, then the grants for the application's role.
    for statement in schema.CREATE_STATEMENTS:
        await admin.execute(statement.format(table=f'"{table_name}"', index=f'"{table_name}_due_idx"'))
    await admin.execute(f"COMMENT ON TABLE \"{table_name}\" IS 'pyncette-postgres schema {constants.SCHEMA_VERSION}'")
    role = least_privileged_url.split("://", 1)[1].split("@", 1)[0]
    await admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table_name}" TO "{role}"')
    # An existing current table needs no DDL privilege, with or without the skip flag.
    async with postgres_repository(postgres_url=least_privileged_url, postgres_table_name=table_name):
        pass
    async with postgres_repository(
        postgres_url=least_privileged_url, postgres_table_name=table_name, postgres_skip_table_create=True
    ) as repository:
        key = TaskKey("s", "a")
        await repository.register_tasks(T0, [Registration(key=key, spec="{}", data="{}", next_run=T0)])
        (claimed,) = (
            await repository.claim_due(T0, "s", owner="w", lease_duration=datetime.timedelta(seconds=60), limit=1)
        ).claimed
        assert await repository.set_paused(T0, key, True)
        assert await repository.unregister_task(T0, key)
        assert claimed.state.key == key
