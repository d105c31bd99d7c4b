"""Checks of option values, shared by the app and every backend.

Each check returns the value in the type the caller needs, or raises
:class:`~pyncette.errors.ConfigurationError` whose message names the option and the value given.
They are strict on purpose: a flag must be a real ``bool`` (``"off"`` is a non-empty string, so
truthiness would read it as on) and a number must be an ``int`` or ``float``, never a ``bool`` or
a string. The command line converts its text values before they get here (see
:func:`pyncette.cli.parse_value`).
"""

from __future__ import annotations

import datetime
import math

from pyncette.errors import ConfigurationError
from pyncette.schedule import format_duration


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def optional_flag(name: str, value: object) -> bool | None:
    """``value`` if it is ``True``, ``False`` or ``None``."""
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True, False or None, got {value!r}")
    return value


def integer(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) from ``minimum`` to ``maximum`` inclusive."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        wanted = f"between {minimum} and {maximum}" if maximum is not None else f"of at least {minimum}"
        raise ConfigurationError(f"{name} must be an integer {wanted}, got {value!r}")
    return value


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite positive number of seconds (or zero with ``allow_zero``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not (value >= 0 if allow_zero else value > 0)
    ):
        wanted = "a number of seconds >= 0" if allow_zero else "a positive number of seconds"
        raise ConfigurationError(f"{name} must be {wanted}, got {value!r}")
    return float(value)


def duration(name: str, value: object, *, allow_zero: bool = False) -> datetime.timedelta:
    """``value`` as a timedelta if it is a positive timedelta or number of seconds (or zero with ``allow_zero``)."""
    delta: datetime.timedelta | None = None
    if isinstance(value, datetime.timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        delta = datetime.timedelta(seconds=value)
    if delta is None or delta < datetime.timedelta(0) or (not allow_zero and not delta):
        wanted = "a timedelta or number of seconds >= 0" if allow_zero else "a positive timedelta or number of seconds"
        shown = format_duration(delta) if delta is not None else repr(value)
        raise ConfigurationError(f"{name} must be {wanted}, got {shown}")
    return delta
