"""Every exception pyncette raises.

Each class derives from :class:`PyncetteException` and from the closest builtin, and formats its
own message from the values it is given. Backends translate driver errors into these at their
boundary, so user code never needs to import a driver to catch a store failure.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class PyncetteException(Exception):
    """Base class of every pyncette error."""


PyncetteError = PyncetteException


class ConfigurationError(PyncetteException, ValueError):
    """The app, a task or a backend was configured with a value that cannot work."""


class TaskDefinitionError(ConfigurationError):
    """A task or a task instance was defined with an invalid value.

    The message names the task and the offending value.
    """

    def __init__(self, task: str, problem: str) -> None:
        self.task = task
        self.problem = problem
        super().__init__(f"task {task!r}: {problem}")


class UnknownBackendError(ConfigurationError, LookupError):
    """``Pyncette(backend=...)`` named a backend that no installed plugin provides."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        listing = ", ".join(sorted(installed)) or "none"
        super().__init__(f"unknown backend {name!r}; installed backends: {listing}. Install it with: pip install pyncette-{name}")


class UnknownOptionError(ConfigurationError, TypeError):
    """An option was passed that the selected backend does not accept.

    ``providers`` maps an option to the installed backend that takes it and that backend's
    distribution; ``missing`` maps an option to the first-party backend that would take it but is
    not installed (its distribution is ``pyncette-<backend>``). The message names both, then the
    installed backends.
    """

    def __init__(
        self,
        backend: str,
        options: Sequence[str],
        accepted: Sequence[str],
        providers: Mapping[str, tuple[str, str]],
        installed: Sequence[str] = (),
        missing: Mapping[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.options = list(options)
        self.installed = sorted(installed)
        missing = missing or {}
        hints = []
        for option in options:
            if option in providers:
                owner, distribution = providers[option]
                origin = distribution or "installed"
                hints.append(f"{option!r} belongs to backend {owner!r} ({origin}); select it with backend={owner!r}")
            elif option in missing:
                owner = missing[option]
                hints.append(f"{option!r} belongs to backend {owner!r}, which is not installed: pip install pyncette-{owner}")
        hint = f" ({'; '.join(hints)})" if hints else ""
        listing = f"; installed backends: {', '.join(self.installed)}" if self.installed else ""
        super().__init__(
            f"backend {backend!r} does not accept option(s) {', '.join(map(repr, options))}{hint}; "
            f"it accepts: {', '.join(accepted) or 'no options'}{listing}"
        )


class LeaseLostException(PyncetteException):
    """The lease on a task instance is no longer held by this worker.

    Raised by commit, unlock and heartbeat when the lease expired and another worker claimed the
    instance, when the instance was force-updated or deleted, or when the fencing token is stale.
    """

    def __init__(self, task: Any = None, message: str | None = None) -> None:
        self.task = task
        super().__init__(message or f"lease lost on task {getattr(task, 'name', task)!r}")


class TaskLockedException(PyncetteException):
    """A task instance could not be updated because another worker holds its lease.

    Pass ``force=True`` to ``schedule_task`` to take it over; the holder's lease then becomes stale.
    """

    def __init__(self, task: Any = None, message: str | None = None) -> None:
        self.task = task
        super().__init__(message or f"task {getattr(task, 'name', task)!r} is locked by another worker")


class TaskNotFoundError(PyncetteException, LookupError):
    """A task instance that an operation needs does not exist in the store."""

    def __init__(self, task: str, instance: str) -> None:
        super().__init__(f"task {task!r} has no instance {instance!r}")


class BackendError(PyncetteException, ConnectionError):
    """The store failed or could not be reached; the message never contains credentials."""


class SchemaVersionError(ConfigurationError):
    """The store holds a schema this version of the backend cannot use."""


def describe_error(error: BaseException) -> str:
    """``error``'s message for a log line; never empty (a timed-out store call has no message of its own)."""
    if isinstance(error, TimeoutError) and not str(error):
        return "no reply within the store timeout (TimeoutError)"
    return str(error) or type(error).__name__


def pyncette_error_in(error: BaseException) -> PyncetteException | None:
    """The :class:`PyncetteException` that ``error`` is, or that an exception group carries.

    A group (anyio's task groups wrap what they raise) yields its first member when every member
    is, recursively, a pyncette error; otherwise, or for any other exception, the result is ``None``.
    """
    if isinstance(error, PyncetteException):
        return error
    # BaseExceptionGroup is builtin from Python 3.11 and the exceptiongroup backport before: match on shape.
    members = getattr(error, "exceptions", None)
    if not isinstance(members, tuple) or not members:
        return None
    found = [pyncette_error_in(member) for member in members]
    return found[0] if all(item is not None for item in found) else None
