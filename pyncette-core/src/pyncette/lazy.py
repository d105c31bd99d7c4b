"""Imports deferred until first use, so that discovering installed backends imports no database driver."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def import_path(path: str) -> Any:
    """The object named by ``"package.module:attribute"``, importing the module."""
    module_name, separator, attribute = path.partition(":")
    if not separator or not attribute:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    return getattr(importlib.import_module(module_name), attribute)


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``exports[name]`` (a module path) on first access.

    A backend package uses it so that ``from pyncette.<backend> import <name>`` works as an eager
    import would, while importing the package (which plugin discovery does) stays cheap. The
    imported value is cached in the package's namespace.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
