"""Registers the ``sqlite`` backend with pyncette through the ``pyncette`` entry point."""

from __future__ import annotations

from pyncette.hookspecs import hookimpl
from pyncette.model import BackendInfo
from pyncette.sqlite.factory import OPTIONS, sqlite_repository


@hookimpl
def pyncette_backends() -> list[BackendInfo]:
    return [
        BackendInfo(
            name="sqlite",
            factory=sqlite_repository,
            options=dict(OPTIONS),
            description="SQLite file (shared by worker processes on one host) or :memory:",
            distribution="pyncette-sqlite",
        )
    ]
