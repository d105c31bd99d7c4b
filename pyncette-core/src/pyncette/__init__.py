__path__ = __import__("pkgutil").extend_path(__path__, __name__)
"""Pyncette: a reliable distributed scheduler for async Python with pluggable storage backends.

Backends are separate distributions that add ``pyncette.<backend>`` sub-packages (``pyncette.redis``,
``pyncette.postgres``, ...); this module never imports them.
"""

from pyncette.context import Context
from pyncette.errors import LeaseLostException, PyncetteException, TaskLockedException
from pyncette.hookspecs import hookimpl
from pyncette.model import CatchUp, DstFold, DstGap, ExecutionMode, FailureMode
from pyncette.pyncette import Pyncette, PyncetteContext, QueryResult
from pyncette.task import Task

__all__ = [
    "CatchUp",
    "Context",
    "DstFold",
    "DstGap",
    "ExecutionMode",
    "FailureMode",
    "LeaseLostException",
    "Pyncette",
    "PyncetteContext",
    "PyncetteException",
    "QueryResult",
    "Task",
    "TaskLockedException",
    "hookimpl",
]
