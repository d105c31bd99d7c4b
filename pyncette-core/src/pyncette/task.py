"""Task definitions: static tasks, dynamic task templates and their instances.

A :class:`Task` is what ``@app.task``, ``@app.dynamic_task`` and ``@app.partitioned_task`` return.
Every option is validated when the task is defined (or, for an instance, when it is created), so a
mistake fails where it is made with a message naming the task and the value.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import re
from typing import Any, Awaitable, Callable, Iterable, Mapping

import attrs

from pyncette.errors import ConfigurationError, TaskDefinitionError
from pyncette.execution import InstanceData, plan_runs
from pyncette.model import (
    JSON,
    CatchUp,
    DstFold,
    DstGap,
    ExecutionMode,
    FailureMode,
    PlannedRun,
    TaskKey,
    TaskStatus,
    to_micros,
)
from pyncette.repository import MAX_INSTANCE_NAME_LENGTH
from pyncette.schedule import Schedule, build_schedule, format_duration

TaskFunc = Callable[..., Awaitable[None]]
PartitionSelector = Callable[[int, str], int]

DEFAULT_LEASE_DURATION = datetime.timedelta(seconds=60)
_TASK_NAME = re.compile(r"^[^:\x00]{1,200}$")

_SCHEDULE_OPTIONS = ("schedule", "interval", "execute_at", "timezone", "dst_gap", "dst_fold", "jitter")
_POLICY_OPTIONS = ("catch_up", "misfire_grace", "max_attempts", "retry_delay", "retry_backoff", "retry_max_delay")


def default_partition_selector(partition_count: int, instance_name: str) -> int:
    """The partition of an instance: a stable hash of its name modulo ``partition_count``."""
    digest = hashlib.blake2b(instance_name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partition_count


def _timedelta(task: str, option: str, value: Any, *, allow_zero: bool = False) -> datetime.timedelta | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = datetime.timedelta(seconds=value)
        except (ValueError, OverflowError):
            raise TaskDefinitionError(
                task, f"{option} must be a finite, representable number of seconds, got {value!r}"
            ) from None
    if not isinstance(value, datetime.timedelta):
        raise TaskDefinitionError(task, f"{option} must be a timedelta or a number of seconds, got {value!r}")
    if value < datetime.timedelta(0) or (value == datetime.timedelta(0) and not allow_zero):
        raise TaskDefinitionError(task, f"{option} must be positive, got {format_duration(value)}")
    return value


def _enum(task: str, option: str, enum_type: Any, value: Any) -> Any:
    if value is None or isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value.upper() in enum_type.__members__:
        return enum_type[value.upper()]
    try:
        return enum_type(value.lower() if isinstance(value, str) else value)
    except (ValueError, AttributeError):
        valid = ", ".join(repr(member.value) for member in enum_type)
        raise TaskDefinitionError(task, f"{option} must be one of {valid}, got {value!r}") from None


_INTERNAL_FIELDS = frozenset({"func", "dynamic", "status", "compiled_schedule", "parent_task"})
"""Fields of :class:`Task` that the scheduler sets itself; a decorator keyword never reaches them."""


def _refuse_reserved(task: str, options: Iterable[str], reserved: frozenset[str], why: str) -> None:
    """Raise :class:`TaskDefinitionError` if a keyword in ``options`` is ``reserved``, naming them and ``why``.

    The message points to ``extra_args={...}``, which carries arguments of any name.
    """
    refused = sorted(reserved.intersection(options))
    if refused:
        raise TaskDefinitionError(
            task, f"{', '.join(map(repr, refused))} {why}; to give the task an argument of that name use extra_args={{...}}"
        )


def canonical_json(task: str, what: str, value: JSON, *, item: str | None = None) -> str:
    """``value`` as compact JSON with sorted keys; a non-JSON value is a definition error.

    The error names where the offending value sits and its type; with ``item`` (e.g. ``"argument"``)
    ``value`` is a mapping whose top-level keys are named as such: ``argument 'payload' is a set``.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        found = _not_json(value, [])
        if found is None:  # json refused something the search does not know; say what json said
            raise TaskDefinitionError(task, f"{what} must be JSON-serialisable ({exc})") from None
        path, problem = found
        if item is not None and path:
            where = f"{item} {path[0]!r}" + (f" at {''.join(f'[{step!r}]' for step in path[1:])}" if path[1:] else "")
        else:
            where = "the value" + (f" at {''.join(f'[{step!r}]' for step in path)}" if path else "")
        raise TaskDefinitionError(task, f"{what} must be JSON-serialisable: {where} {problem}") from None


def _not_json(value: Any, path: list[Any]) -> tuple[list[Any], str] | None:
    """The path to the first part of ``value`` that JSON cannot hold, and what is wrong with it."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"is {value!r}, which JSON cannot represent")
    if isinstance(value, (list, tuple)):
        for index, element in enumerate(value):
            found = _not_json(element, [*path, index])
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        key_kinds = {"text" if isinstance(key, str) else "null" if key is None else "number" for key in value}
        for key, element in value.items():
            if key is not None and not isinstance(key, (str, int, float, bool)):
                return path, f"has a key of type {type(key).__name__} ({key!r:.40}); JSON keys are strings"
            found = _not_json(element, [*path, key])
            if found is not None:
                return found
        if len(key_kinds) > 1:
            return path, f"mixes {' and '.join(sorted(key_kinds))} keys, which cannot be sorted"
        return None
    return path, f"is a value of type {type(value).__name__}, which JSON cannot represent"


@attrs.define(eq=False, kw_only=True)
class Task:
    """A task definition, a dynamic task template, or an instance of a template.

    Calling a task calls its function: ``await task(context)``.
    """

    name: str
    func: TaskFunc
    dynamic: bool = False
    parent_task: Task | None = None
    enabled: bool = True
    schedule: str | None = None
    interval: datetime.timedelta | None = None
    execute_at: datetime.datetime | None = None
    timezone: str | None = None
    dst_gap: DstGap | None = None
    dst_fold: DstFold | None = None
    jitter: datetime.timedelta | None = None
    execution_mode: ExecutionMode = ExecutionMode.AT_LEAST_ONCE
    failure_mode: FailureMode = FailureMode.NONE
    lease_duration: datetime.timedelta = DEFAULT_LEASE_DURATION
    heartbeat_interval: datetime.timedelta | None = None
    cancel_on_lease_lost: bool = False
    catch_up: CatchUp = CatchUp.ALL
    misfire_grace: datetime.timedelta | None = None
    max_attempts: int | None = None
    retry_delay: datetime.timedelta = datetime.timedelta(0)
    retry_backoff: float = 2.0
    retry_max_delay: datetime.timedelta = datetime.timedelta(hours=1)
    partition_count: int | None = None
    partition_selector: PartitionSelector = default_partition_selector
    enabled_partitions: tuple[int, ...] | None = None
    extra_args: dict[str, JSON] = attrs.field(factory=dict)
    compiled_schedule: Schedule | None = None
    status: TaskStatus | None = None
    """Set on tasks returned by ``get_task`` / ``list_tasks``: what the store holds."""

    def __repr__(self) -> str:
        kind = "instance" if self.is_instance else "dynamic task" if self.dynamic else "task"
        return f"<{kind} {self.full_name!r}>"

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        await self.func(*args, **kwargs)

    @property
    def is_instance(self) -> bool:
        return self.parent_task is not None

    @property
    def template(self) -> Task:
        """The task that defines behaviour: the template for an instance, else the task itself."""
        return self.parent_task or self

    @property
    def full_name(self) -> str:
        return f"{self.parent_task.name}/{self.name}" if self.parent_task else self.name

    # definition

    @classmethod
    def define(cls, func: TaskFunc, decorator_options: Mapping[str, Any], *, dynamic: bool = False) -> Task:
        """Build and validate a task from a decorator's keywords; unknown keywords become extra args.

        Keywords naming a field the scheduler sets itself (``func``, ``dynamic``, ``status``, ...)
        are refused with :class:`TaskDefinitionError`; ``extra_args={...}`` passes arguments of
        any name.
        """
        options = dict(decorator_options)
        name = options.pop("name", None)
        while isinstance(func, Task):
            func = func.func
        task_name = name if name is not None else getattr(func, "__name__", None)
        if not isinstance(task_name, str) or not _TASK_NAME.match(task_name):
            raise TaskDefinitionError(str(task_name), "a task name must be 1-200 characters without ':'")
        if not callable(func):
            raise TaskDefinitionError(task_name, f"the task function must be callable, got {func!r}")
        _refuse_reserved(task_name, options, _INTERNAL_FIELDS, "cannot be given to a task decorator")
        if options.pop("fast_forward", False) and "catch_up" not in options:
            options["catch_up"] = CatchUp.LATEST
        fields = {f.name for f in attrs.fields(cls)}
        extra = {k: options.pop(k) for k in list(options) if k not in fields}
        extra.update(options.pop("extra_args", None) or {})
        task = cls(name=task_name, func=func, dynamic=dynamic, **_normalise(task_name, options), extra_args=extra)
        canonical_json(task_name, "extra arguments", task.extra_args, item="argument")
        heartbeat = getattr(func, "_pyncette_heartbeat", None)
        if heartbeat is not None and task.heartbeat_interval is None:
            ratio, cancel = heartbeat
            task.heartbeat_interval = task.lease_duration * (1 - ratio)
            task.cancel_on_lease_lost = cancel
        task._validate()
        return task

    def _validate(self) -> None:
        template = self.template
        if template.execution_mode is ExecutionMode.AT_MOST_ONCE:
            if template.failure_mode is not FailureMode.NONE:
                raise TaskDefinitionError(
                    self.full_name,
                    f"failure_mode=FailureMode.{template.failure_mode.name} applies only to ExecutionMode.AT_LEAST_ONCE, "
                    "not to ExecutionMode.AT_MOST_ONCE",
                )
            if self.max_attempts is not None:
                raise TaskDefinitionError(
                    self.full_name,
                    f"retries (max_attempts={self.max_attempts!r}) apply only to ExecutionMode.AT_LEAST_ONCE, "
                    "not to ExecutionMode.AT_MOST_ONCE",
                )
        if self.max_attempts is not None and (not isinstance(self.max_attempts, int) or self.max_attempts < 1):
            raise TaskDefinitionError(self.full_name, f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if not isinstance(self.retry_backoff, (int, float)) or self.retry_backoff < 1:
            raise TaskDefinitionError(self.full_name, f"retry_backoff must be a number >= 1, got {self.retry_backoff!r}")
        if self.partition_count is not None:
            if not isinstance(self.partition_count, int) or self.partition_count < 1:
                raise TaskDefinitionError(self.name, f"partition_count must be a positive integer, got {self.partition_count!r}")
            bad = [p for p in self.enabled_partitions or () if not 0 <= p < self.partition_count]
            if bad:
                raise TaskDefinitionError(self.name, f"enabled_partitions {bad} outside 0..{self.partition_count - 1}")
        has_schedule = any(getattr(self, k) is not None for k in ("schedule", "interval", "execute_at"))
        if self.dynamic and not self.is_instance:
            if has_schedule:
                self.compiled_schedule = self._compile()
            return
        if not self.dynamic and self.execute_at is not None:
            raise TaskDefinitionError(self.name, "execute_at is only for dynamic task instances")
        if not has_schedule:
            raise TaskDefinitionError(self.full_name, "one of schedule, interval or execute_at is required")
        self.compiled_schedule = self._compile()

    def _compile(self) -> Schedule:
        try:
            return build_schedule(
                schedule=self.schedule,
                interval=self.interval,
                execute_at=self.execute_at,
                timezone=self.timezone,
                dst_gap=self.dst_gap,
                dst_fold=self.dst_fold,
                jitter=self.jitter,
                jitter_key=self.full_name,
            )
        except ConfigurationError as exc:
            raise TaskDefinitionError(self.full_name, str(exc)) from None

    def next_runs(
        self, n: int = 10, after: datetime.datetime | None = None, *, include_paused: bool = False
    ) -> list[datetime.datetime]:
        """The next ``n`` fire times from ``after`` (default: now), in the task's zone.

        The times at which :meth:`planned_runs` starts each run: see there for what an instance
        read back from the store previews (a pending retry, overdue slots, pausing).
        """
        return [run.at for run in self.planned_runs(n, after, include_paused=include_paused)]

    def planned_runs(
        self, n: int = 10, after: datetime.datetime | None = None, *, include_paused: bool = False
    ) -> list[PlannedRun]:
        """The next ``n`` runs from ``after`` (default: now), each with its start time, slot and attempt.

        DST rules and jitter apply. A task without a stored status (a static task as defined)
        previews the schedule: its slots strictly after ``after``. An instance returned by
        ``get_task`` / ``list_tasks`` previews what the scheduler will do from its stored state if
        workers claim it from ``after`` on and every run succeeds (see
        :func:`pyncette.execution.plan_runs`): a pending retry comes first, at its retry time,
        and the schedule continues after the retried slot; a stored slot already due at ``after``
        is resolved by the misfire policy, and those that run are listed at ``after`` (they run
        at once); a run in progress is not listed. Pass the current time as ``after``: a later one
        previews the instance as if no worker ran it until then. A paused instance previews no
        runs, or with ``include_paused=True`` the runs it makes if resumed at ``after`` without
        ``catch_up``.
        """
        schedule = self.compiled_schedule
        if schedule is None:
            raise TaskDefinitionError(self.full_name, "a template without a schedule has no runs; preview an instance")
        moment = after or datetime.datetime.now(datetime.timezone.utc)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"after must be a timezone-aware datetime, got {moment!r}")
        status = self.status
        if n <= 0 or (status is not None and status.paused and not include_paused):
            return []
        if status is None:
            return [PlannedRun(at=slot, scheduled_at=slot) for slot in schedule.next_runs(n, moment)]
        data = InstanceData(
            attempt=status.attempt,
            retry_slot=None if status.retry_slot is None else to_micros(status.retry_slot),
            last_slot=None if status.last_slot is None else to_micros(status.last_slot),
        )
        running = status.locked_until is not None and status.locked_until > moment
        runs = plan_runs(schedule, status.next_run, data, moment, status.catch_up, status.misfire_grace, running=running)
        return list(itertools.islice(runs, n))

    # dynamic instances

    def instantiate(self, name: str, /, **kwargs: Any) -> Task:
        """An instance of this dynamic template named ``name``.

        Keywords override the template's schedule (``schedule``, ``interval`` or ``execute_at``,
        with ``timezone`` and the DST and jitter options) and policies (``catch_up``,
        ``misfire_grace``, retries); ``fast_forward=True`` means ``catch_up="latest"`` (unless
        ``catch_up`` is given), as on the decorators. Options of the whole task (``execution_mode``,
        ``failure_mode``, ``lease_duration``, ``enabled``, ...) cannot differ per instance and are
        refused with :class:`TaskDefinitionError`. Any other keyword is an argument of the instance;
        ``extra_args={...}`` passes arguments of any name.
        """
        if not self.dynamic or self.is_instance:
            raise TaskDefinitionError(self.full_name, "only a dynamic task template can be instantiated")
        if not isinstance(name, str) or not name or len(name) > MAX_INSTANCE_NAME_LENGTH:
            raise TaskDefinitionError(
                self.name, f"instance names must be 1-{MAX_INSTANCE_NAME_LENGTH} characters, got {name!r:.80}"
            )
        _refuse_reserved(
            f"{self.name}/{name}", kwargs, _TASK_WIDE_FIELDS, "cannot be given to an instance: they are options of the whole task"
        )
        arguments = {**(kwargs.pop("extra_args", None) or {})}
        fast_forward = kwargs.pop("fast_forward", False)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _SCHEDULE_OPTIONS + _POLICY_OPTIONS}
        if fast_forward:
            overrides.setdefault("catch_up", CatchUp.LATEST)
        if any(k in overrides for k in ("schedule", "interval", "execute_at")):
            base = {k: None for k in ("schedule", "interval", "execute_at")}
        else:
            base = {}
        overrides = _normalise(f"{self.name}/{name}", {**base, **overrides})
        instance = attrs.evolve(
            self,
            name=name,
            parent_task=self,
            extra_args={**self.extra_args, **kwargs, **arguments},
            compiled_schedule=None,
            status=None,
            **overrides,
        )
        canonical_json(instance.full_name, "instance arguments", instance.extra_args, item="argument")
        instance._validate()
        return instance

    def instance_spec(self) -> dict[str, JSON]:
        """The JSON document that stores this instance (see :meth:`from_spec`)."""
        spec: dict[str, JSON] = {"args": self.extra_args}
        template = self.template
        for option in _SCHEDULE_OPTIONS + _POLICY_OPTIONS:
            value = getattr(self, option)
            if (value is not None and value != getattr(template, option)) or (
                option in ("schedule", "interval", "execute_at") and value is not None
            ):
                spec[option] = _to_json(value)
        return spec

    def static_spec(self) -> dict[str, JSON]:
        """The JSON document stored for a static task; a change to it re-plans the next run."""
        return {k: _to_json(getattr(self, k)) for k in _SCHEDULE_OPTIONS if getattr(self, k) is not None}

    def from_spec(self, name: str, spec: Mapping[str, JSON]) -> Task:
        """Rebuild an instance of this template from its stored document.

        A document with a field this version does not know (written by a newer version) is
        refused: running it with that field ignored could do something else than it asks.
        """
        if not isinstance(spec, Mapping):
            raise TaskDefinitionError(f"{self.name}/{name}", f"a stored instance must be a JSON object, got {spec!r:.80}")
        unknown = set(spec) - {"args", *_SCHEDULE_OPTIONS, *_POLICY_OPTIONS}
        if unknown:
            raise TaskDefinitionError(f"{self.name}/{name}", f"stored by a newer version: unknown fields {sorted(unknown)}")
        args = spec.get("args") or {}
        if not isinstance(args, Mapping):
            raise TaskDefinitionError(f"{self.name}/{name}", f"stored arguments must be a JSON object, got {args!r:.80}")
        options = {option: _from_json(option, spec[option]) for option in _SCHEDULE_OPTIONS + _POLICY_OPTIONS if option in spec}
        return self.instantiate(name, extra_args=dict(args), **options)

    # storage keys

    def scopes(self) -> list[str]:
        """The storage scopes this task polls (one per enabled partition for partitioned tasks)."""
        if self.partition_count is None:
            return [self.name]
        partitions = self.enabled_partitions if self.enabled_partitions is not None else range(self.partition_count)
        return [f"{self.name}:{p}" for p in partitions]

    def all_scopes(self) -> list[str]:
        """Every storage scope of this task, enabled or not (listing covers all partitions)."""
        if self.partition_count is None:
            return [self.name]
        return [f"{self.name}:{p}" for p in range(self.partition_count)]

    def key_for(self, instance_name: str | None) -> TaskKey:
        """The storage key of the static task, or of the named instance of this template.

        A dynamic template without an instance name (``None`` or ``""``) raises :class:`TaskDefinitionError`:
        the template itself is never stored; so does a static task given an instance name, since it
        has no instances.
        """
        if not self.dynamic:
            if instance_name:
                raise TaskDefinitionError(self.name, f"a static task has no instances (got instance name {instance_name!r})")
            return TaskKey(self.name, "")
        if not instance_name:
            raise TaskDefinitionError(self.name, f"an instance name is needed for a dynamic task (got {instance_name!r})")
        if self.partition_count is None:
            return TaskKey(self.name, instance_name)
        partition = self.partition_selector(self.partition_count, instance_name)
        return TaskKey(f"{self.name}:{partition}", instance_name)

    @property
    def key(self) -> TaskKey:
        return self.template.key_for(self.name if self.is_instance else None)


_TASK_WIDE_FIELDS = frozenset(field.name for field in attrs.fields(Task)) - {
    *_SCHEDULE_OPTIONS,
    *_POLICY_OPTIONS,
    "name",  # instantiate's positional parameter; as a keyword, an argument
    "extra_args",  # carries arguments of any name
}
"""Fields of :class:`Task` an instance cannot override: the scheduler's own (``func``, ``status``, ...)
and options of the whole task (``execution_mode``, ``failure_mode``, ``lease_duration``, ...)."""


def _normalise(task: str, options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for option in ("lease_duration", "heartbeat_interval", "retry_max_delay"):
        if option in out:
            out[option] = _timedelta(task, option, out[option])
    for option in ("misfire_grace", "jitter", "retry_delay"):
        if option in out:
            out[option] = _timedelta(task, option, out[option], allow_zero=True)
    if out.get("retry_delay", 0) is None:
        out["retry_delay"] = datetime.timedelta(0)
    if "interval" in out and out["interval"] is not None:
        out["interval"] = _timedelta(task, "interval", out["interval"])
    for option, enum_type in (
        ("catch_up", CatchUp),
        ("dst_gap", DstGap),
        ("dst_fold", DstFold),
        ("execution_mode", ExecutionMode),
        ("failure_mode", FailureMode),
    ):
        if option in out:
            out[option] = _enum(task, option, enum_type, out[option])
    if out.get("timezone") is not None and not isinstance(out["timezone"], str):
        out["timezone"] = str(out["timezone"])
    if "enabled_partitions" in out and out["enabled_partitions"] is not None:
        out["enabled_partitions"] = tuple(_ints(task, out["enabled_partitions"]))
    return out


def _ints(task: str, values: Iterable[Any]) -> Iterable[int]:
    for value in values:
        if not isinstance(value, int):
            raise TaskDefinitionError(task, f"enabled_partitions must hold integers, got {value!r}")
        yield value


def _to_json(value: Any) -> JSON:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (CatchUp, DstGap, DstFold)):
        return value.value
    return value


def _from_json(option: str, value: JSON) -> Any:
    if option == "execute_at" and isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value
