"""Helpers for task functions."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


def with_heartbeat(lease_remaining_ratio: float = 0.5, cancel_on_lease_lost: bool = False) -> Callable[[F], F]:
    """Extend the lease of a running task automatically.

    The lease is extended whenever less than ``lease_remaining_ratio`` of it remains, that is every
    ``lease_duration * (1 - lease_remaining_ratio)``. With ``cancel_on_lease_lost``, the task is
    cancelled as soon as an extension finds the lease lost. Put it under ``@app.task``::

        @app.task(interval=timedelta(seconds=10), lease_duration=timedelta(seconds=5))
        @with_heartbeat()
        async def long_job(context): ...
    """
    if not 0 < lease_remaining_ratio < 1:
        raise ValueError(f"lease_remaining_ratio must be between 0 and 1, got {lease_remaining_ratio!r}")

    def decorate(func: F) -> F:
        func._pyncette_heartbeat = (lease_remaining_ratio, cancel_on_lease_lost)  # type: ignore[attr-defined]
        return func

    return decorate
