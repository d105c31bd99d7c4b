"""Hook specifications: the contract between pyncette and its plugins.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names match
the specifications below. Installed plugins are found through the ``pyncette`` entry-point group::

    [project.entry-points.pyncette]
    mybackend = "my_package.plugin"

Hooks are synchronous: they return values, factories or callables, and the scheduler awaits what
needs awaiting. Every hook is optional for a plugin; implementations may omit arguments they do not
use. Hook names are checked strictly at start-up, so a misspelled implementation fails loudly.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Sequence

import pluggy

if TYPE_CHECKING:
    from pyncette.model import BackendInfo, Lease

PROJECT_NAME = "pyncette"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin authors: decorate each hook implementation with ``@hookimpl``."""


# Backends


@hookspec
def pyncette_backends() -> Sequence[BackendInfo]:
    """Return the storage backends this plugin provides.

    Each :class:`~pyncette.model.BackendInfo` names the backend (the name users pass as
    ``Pyncette(backend=...)``), its repository factory, every keyword option the factory accepts
    with a one-line description, a one-line description of the backend and the distribution that
    ships it. Names must be unique among installed plugins.
    """
    raise NotImplementedError


# Middleware


@hookspec
def pyncette_middlewares(app: Any) -> Sequence[Any]:
    """Return middlewares to wrap every task execution of ``app``.

    A middleware is ``async def middleware(context, next) -> None`` and must await ``next()``
    exactly once to run the rest of the chain (or raise to fail the execution). Plugin middlewares
    run outside the application's own ``@app.middleware`` ones, in plugin registration order.
    """
    raise NotImplementedError


# Repository wrappers


@hookspec
def pyncette_repository_wrappers(app: Any) -> Sequence[Any]:
    """Return wrappers of ``app``'s store, to measure or trace repository operations.

    A wrapper is ``wrap(repository) -> Repository``: it returns a
    :class:`~pyncette.repository.Repository` that delegates every operation to ``repository``.
    Each ``app.create()`` applies the wrappers once, after the store opened, in the order the hook
    returns them (the first one is innermost); the scheduler and the management API use the result.
    """
    raise NotImplementedError


# Heartbeating


@hookspec(firstresult=True)
def pyncette_heartbeat_interval(task: Any, lease_duration: datetime.timedelta) -> datetime.timedelta | None:
    """Return how often to extend the lease of a running ``task`` automatically.

    Stops at the first non-None result. ``datetime.timedelta(0)`` disables automatic heartbeats for
    the task. When no plugin answers, the task's own ``heartbeat_interval`` option applies.
    """
    raise NotImplementedError


@hookspec
def pyncette_on_heartbeat(context: Any, lease: Lease) -> None:
    """Called after every successful lease extension of a running task."""


@hookspec
def pyncette_on_lease_extension_failed(context: Any, error: BaseException) -> None:
    """Called when extending a lease failed for a reason other than losing it (a store error)."""


@hookspec
def pyncette_on_lease_lost(context: Any) -> None:
    """Called when a running task's lease turned out to be lost (expired and taken, or revoked).

    A heartbeat or the commit may find the loss; either way it is reported once per execution.
    """


# Lifecycle


@hookspec
def pyncette_on_execution_finished(context: Any, outcome: str, duration: datetime.timedelta) -> None:
    """Called after every task execution with its outcome.

    ``outcome`` is one of ``"succeeded"``, ``"failed"`` (will be retried or left locked),
    ``"given_up"`` (failed, slot abandoned after the last attempt or under ``FailureMode.COMMIT``)
    and ``"lease_lost"`` (the body finished but its commit was refused).
    """


@hookspec
def pyncette_on_misfire(task: Any, instance: str, missed: int, coalesced: int) -> None:
    """Called when a claimed instance had slots that came due while nobody ran them.

    ``missed`` slots were dropped by the misfire policy; ``coalesced`` slots were folded into the
    run that is about to happen.
    """
