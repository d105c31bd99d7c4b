"""Registers the ``dynamodb`` backend with pyncette through the ``pyncette`` entry-point group."""

from __future__ import annotations

from pyncette.dynamodb.factory import OPTIONS, dynamodb_repository
from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="dynamodb",
            factory=dynamodb_repository,
            options=dict(OPTIONS),
            description="Amazon DynamoDB (or a compatible server) through aiobotocore",
            distribution="pyncette-dynamodb",
        )
    ]
