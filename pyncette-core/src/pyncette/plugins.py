"""Plugin discovery and backend selection.

The plugin manager is built in a fixed order: hook specifications, built-in plugins, the plugins the
application passed explicitly, then (unless disabled) every installed plugin of the ``pyncette``
entry-point group, and finally a strict check that every hook implementation matches a spec.

Set ``PYNCETTE_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry-point discovery, or
``PYNCETTE_PLUGINS=name,name`` to load only the named entry points.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import Any, Iterable, Mapping

import pluggy

from pyncette import hookspecs, memory
from pyncette.errors import ConfigurationError, UnknownBackendError, UnknownOptionError
from pyncette.model import BackendInfo
from pyncette.repository import RepositoryFactory

logger = logging.getLogger(__name__)

BUILTIN_PLUGINS = {"memory": memory}
COMMON_OPTIONS = ("concurrency_limit", "batch_size")
DEFAULT_BACKENDS = ("sqlite", "memory")
FIRST_PARTY_BACKENDS = ("sqlite", "redis", "postgres", "mysql", "dynamodb")
"""Backends published from this repository, each as ``pyncette-<name>``; their options start with ``<name>_``."""


def create_plugin_manager(plugins: Iterable[Any] = (), *, autoload: bool | None = None) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, ``plugins`` and (by default) every installed plugin."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name, plugin in BUILTIN_PLUGINS.items():
        manager.register(plugin, name=name)
    for plugin in plugins:
        manager.register(plugin)
    if autoload is None:
        autoload = os.environ.get("PYNCETTE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if autoload:
        only = {n.strip() for n in os.environ.get("PYNCETTE_PLUGINS", "").split(",") if n.strip()}
        if only:
            for entry_point in importlib.metadata.entry_points(group=hookspecs.PROJECT_NAME):
                if entry_point.name not in only and manager.get_plugin(entry_point.name) is None:
                    manager.set_blocked(entry_point.name)
        manager.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    manager.check_pending()
    return manager


def installed_backends(manager: pluggy.PluginManager) -> dict[str, BackendInfo]:
    """Every backend contributed by a registered plugin, by name."""
    backends: dict[str, BackendInfo] = {}
    for contributed in manager.hook.pyncette_backends():
        for info in contributed:
            if info.name in backends and backends[info.name].factory != info.factory:
                raise ConfigurationError(
                    f"two plugins provide a backend named {info.name!r} "
                    f"({backends[info.name].distribution or '?'} and {info.distribution or '?'})"
                )
            backends[info.name] = info
    return backends


def resolve_backend(
    manager: pluggy.PluginManager,
    *,
    backend: str | None,
    repository_factory: RepositoryFactory | None,
    options: Mapping[str, Any],
) -> tuple[str, RepositoryFactory]:
    """Choose the backend and check the options against it.

    ``repository_factory`` wins (pyncette 1.x style); else the backend named ``backend``; else the
    one installed backend that declares every option given; else the default (SQLite in memory if
    pyncette-sqlite is installed, otherwise the memory backend). Options no chosen backend accepts
    fail at once.
    """
    backends = installed_backends(manager)
    if repository_factory is not None:
        info = next((b for b in backends.values() if b.provides(repository_factory)), None)
        if info is not None:
            _check_options(info, options, backends)
            return info.name, repository_factory
        return getattr(repository_factory, "__name__", "custom"), repository_factory
    if backend is None:
        backend = _infer_backend(backends, options)
    info = backends.get(backend)
    if info is None:
        raise UnknownBackendError(backend, list(backends))
    _check_options(info, options, backends)
    try:
        factory = info.load_factory()
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"backend {info.name!r} ({info.distribution or 'unknown distribution'}) could not be loaded: {exc}"
        ) from exc
    return info.name, factory


def _infer_backend(backends: Mapping[str, BackendInfo], options: Mapping[str, Any]) -> str:
    given = set(options) - set(COMMON_OPTIONS)
    if given:
        matches = [name for name, info in backends.items() if given <= set(info.options)]
        if len(matches) == 1:
            return matches[0]
        prefixes = {option.split("_", 1)[0] for option in given}
        if len(prefixes) == 1 and not matches:
            (prefix,) = prefixes
            if prefix not in backends:
                raise UnknownBackendError(prefix, list(backends))
    return next(name for name in DEFAULT_BACKENDS if name in backends)


def _check_options(info: BackendInfo, options: Mapping[str, Any], backends: Mapping[str, BackendInfo]) -> None:
    unknown = sorted(set(options) - set(info.options) - set(COMMON_OPTIONS))
    if unknown:
        providers = {opt: (b.name, b.distribution) for b in backends.values() for opt in b.options if opt in unknown}
        missing = {
            opt: prefix
            for opt in unknown
            if opt not in providers and (prefix := opt.split("_", 1)[0]) in FIRST_PARTY_BACKENDS and prefix not in backends
        }
        raise UnknownOptionError(info.name, unknown, sorted(info.options), providers, list(backends), missing)
