"""TLS to a private MariaDB/MySQL server that offers it with a certificate made by the test (see conftest)."""

from __future__ import annotations

import datetime
import ssl
from typing import Any

import pytest

from pyncette.errors import BackendError
from pyncette.model import Completion, Registration, TaskKey
from pyncette.mysql import mysql_repository
from pyncette.mysql.repository import is_encrypted
from tests.backends.mysql.conftest import Certificates, PrivateServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

UTC = datetime.timezone.utc
T0 = datetime.datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SECOND = datetime.timedelta(seconds=1)
LEASE = datetime.timedelta(seconds=30)


def options(server: PrivateServer, table: str) -> dict[str, Any]:
    return {
        "mysql_host": "127.0.0.1",
        "mysql_port": server.port,
        "mysql_user": "root",
        "mysql_database": "pyncette",
        "mysql_table_name": table,
        "mysql_pool_size": 2,
    }


async def session_status(conn: Any, name: str) -> str:
    async with conn.cursor() as cursor:
        await cursor.execute("SHOW SESSION STATUS LIKE %s", (name,))
        ((_, value),) = await cursor.fetchall()
        return str(value)


async def test_a_verified_tls_session_carries_claims_and_completions(
    private_tls_server: PrivateServer, certificates: Certificates
) -> None:
    # Verified against the test's own CA, host name included: the certificate names 127.0.0.1.
    context = ssl.create_default_context(cafile=str(certificates.ca))
    async with mysql_repository(**options(private_tls_server, "tls_tasks"), mysql_ssl=context) as repository:
        await repository.register_tasks(
            T0, [Registration(key=TaskKey("tls", f"i{i}"), spec="{}", data="{}", next_run=T0) for i in range(3)]
        )
        claimed = (await repository.claim_due(T0, "tls", owner="w", lease_duration=LEASE, limit=10)).claimed
        assert len(claimed) == 3
        done = [Completion(key=c.state.key, lease=c.lease, next_run=None, data="{}") for c in claimed]
        assert await repository.complete_tasks(T0, done) == [True] * 3
        assert (await repository.list_tasks("tls", limit=10)).states == ()

        # Every connection the pool made is encrypted, as the client and as the server see it.
        pool = repository._pool
        connections = [await pool.acquire() for _ in range(pool.maxsize)]
        try:
            for conn in connections:
                assert is_encrypted(conn)
                assert await session_status(conn, "Ssl_cipher") != ""
                assert await session_status(conn, "Ssl_version") in ("TLSv1.2", "TLSv1.3")
        finally:
            for conn in connections:
                pool.release(conn)


async def test_a_server_certificate_from_another_ca_fails_at_start_naming_mysql_ssl(
    private_tls_server: PrivateServer, certificates: Certificates
) -> None:
    context = ssl.create_default_context(cafile=str(certificates.other_ca))
    with pytest.raises(BackendError) as info:
        async with mysql_repository(**options(private_tls_server, "tls_tasks"), mysql_ssl=context):
            pass
    message = str(info.value)
    assert "mysql_ssl" in message
    assert f"127.0.0.1:{private_tls_server.port}" in message
    assert "certificate verify failed" in message


async def test_the_system_ca_store_does_not_trust_a_private_ca(private_tls_server: PrivateServer) -> None:
    """``mysql_ssl=True`` verifies against the system store: a private CA's certificate is refused, never accepted unverified."""
    with pytest.raises(BackendError, match="mysql_ssl"):
        async with mysql_repository(**options(private_tls_server, "tls_tasks"), mysql_ssl=True):
            pass
