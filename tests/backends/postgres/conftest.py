"""Fixtures of the PostgreSQL backend tests: each test gets its own table, dropped afterwards."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import AsyncIterator

import asyncpg
import pytest

from tests.support.servers import POSTGRES_URL, require_server


def server_address() -> tuple[str, int]:
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture
def postgres_url() -> str:
    require_server("PostgreSQL", *server_address())
    return POSTGRES_URL


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for inspecting and cleaning up what the tests create."""
    connection = await asyncpg.connect(postgres_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def table_name(admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"pyncette_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await admin.execute(f'DROP TABLE IF EXISTS "{name}"')
