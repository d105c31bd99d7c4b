"""Stands in for a database driver: only using the ``lazy`` backend may import it.

Plugin discovery must not import a backend's driver; the tests check that this module is absent
from ``sys.modules`` until an app selects the ``lazy`` backend, as they do for the real drivers.
"""

from __future__ import annotations

CONNECTIONS: list[str] = []
"""Labels of the stores opened through this stand-in driver."""


def connect(label: str) -> str:
    CONNECTIONS.append(label)
    return label
