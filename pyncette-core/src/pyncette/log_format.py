"""Logging set-up for ``app.main()`` and ``pyncette run``: plain text or one JSON object per line.

Pyncette logs through the standard :mod:`logging` module, one logger per module (``pyncette.pyncette``,
``pyncette.execution``, ``pyncette.redis``, ...). Nothing here is needed to embed the scheduler in a
program that configures logging itself; :class:`JsonFormatter` can be used there too::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)

The format is chosen with ``pyncette run --log-format json`` or ``PYNCETTE_LOG_FORMAT=json``; the
level with ``--log-level`` or ``PYNCETTE_LOG_LEVEL``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


def log_fields(
    task: str,
    instance: str = "",
    *,
    scheduled_at: datetime.datetime | None = None,
    fencing_token: int | None = None,
    attempt: int | None = None,
    outcome: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a pyncette log record about a task or one of its instances.

    ``task`` is the task's name (a dynamic task's template, never a partition scope, as in the
    Prometheus labels); ``instance`` is a dynamic instance's name and is left out for static tasks,
    like every other field that is ``None``. ``scheduled_at`` is written as ISO 8601 text. Call it
    only on paths that do log (warnings, errors), so running a task costs nothing extra.
    """
    fields: dict[str, Any] = {"task": task}
    if instance:
        fields["instance"] = instance
    if scheduled_at is not None:
        fields["scheduled_at"] = scheduled_at.isoformat()
    for name, value in (("fencing_token", fencing_token), ("attempt", attempt), ("outcome", outcome)):
        if value is not None:
            fields[name] = value
    return fields


def scope_task(scope: str) -> str:
    """The task name of a storage scope (``"name"`` or ``"name:<partition>"``)."""
    return scope.split(":", 1)[0]


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Every record has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; an exception
    adds ``exception`` (the formatted traceback). Values passed with ``extra={...}`` become fields of
    their own (``logger.info("claimed", extra={"task": "tick", "count": 3})``); values that JSON cannot
    represent are written as their ``repr``.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=repr, ensure_ascii=False)


def configure_logging(level: str | int | None = None, log_format: str | None = None, *, stream: TextIO | None = None) -> None:
    """Configure the root logger with one handler on ``stream`` (default stderr).

    ``level`` defaults to ``PYNCETTE_LOG_LEVEL`` (else INFO) and ``log_format`` (``"text"`` or
    ``"json"``) to ``PYNCETTE_LOG_FORMAT`` (else text). Like :func:`logging.basicConfig`, it leaves a
    root logger that already has handlers alone, so a program's own configuration wins.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    level = level if level is not None else os.environ.get("PYNCETTE_LOG_LEVEL", "INFO")
    log_format = (log_format or os.environ.get("PYNCETTE_LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; choose one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
