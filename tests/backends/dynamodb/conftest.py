"""Fixtures for the DynamoDB backend tests: a private single-threaded moto server and per-test tables."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.servers import require_server

REGION = "us-east-1"
SERVER_SCRIPT = Path(__file__).with_name("moto_server.py")
DUMMY_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_SESSION_TOKEN": "testing-session-token",
    # Never fall back to a real ~/.aws or to the instance metadata service.
    "AWS_CONFIG_FILE": "/nonexistent/pyncette-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/pyncette-test-aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoServer:
    """A moto DynamoDB server in a subprocess, on its own free loopback port.

    While it runs, this process's environment carries the dummy credentials of
    :data:`DUMMY_ENVIRONMENT` (restored by :meth:`stop`), so that clients made here, such as a
    multi-process test seeding instances, sign their requests without ever reading real ones.
    """

    def __init__(self, environment: dict[str, str] | None = None) -> None:
        self._saved = {name: os.environ.get(name) for name in DUMMY_ENVIRONMENT}
        os.environ.update(DUMMY_ENVIRONMENT)
        env = {**os.environ, **(environment or {})}
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        self.port = int(line) if line.isdigit() else 0
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_moto(environment: dict[str, str] | None = None) -> MotoServer:
    server = MotoServer(environment)
    if not server.port:
        server.stop()
        # Not startable (moto[server] missing): skip, or fail under CI=true, as for a dead server.
        require_server("moto DynamoDB server (pip install 'moto[server]')", "127.0.0.1", 9)
    require_server("moto DynamoDB server", "127.0.0.1", server.port)
    return server


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in [*DUMMY_ENVIRONMENT, "AWS_DEFAULT_REGION", "AWS_PROFILE"]}
    os.environ.update(DUMMY_ENVIRONMENT)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def moto_server(_aws_environment: None) -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    return moto_server.endpoint


def delete_table(endpoint: str, table_name: str) -> None:
    import boto3

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        client.delete_table(TableName=table_name)
    except client.exceptions.ResourceNotFoundException:
        pass


@pytest.fixture
def table_name(moto_endpoint: str) -> Iterator[str]:
    name = f"pyncette-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_table(moto_endpoint, name)


@pytest.fixture
def dynamodb_options(moto_endpoint: str, table_name: str) -> dict[str, Any]:
    return {"dynamodb_endpoint": moto_endpoint, "dynamodb_region_name": REGION, "dynamodb_table_name": table_name}
