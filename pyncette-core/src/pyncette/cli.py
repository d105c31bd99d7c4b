"""The ``pyncette`` command: run an app, inspect backends and tasks, preview schedules, check a deployment.

Every command that takes an app names it as ``module:attribute`` (``myproject.worker:app``); the
attribute is a :class:`~pyncette.Pyncette` or a function that returns one, and the current directory
is importable (``--app-dir`` changes that). The backend of the app can be replaced from the command
line or the environment, for twelve-factor deployments:

- ``--backend NAME`` or ``PYNCETTE_BACKEND``: the installed backend to use instead of the app's;
- ``-o OPTION=VALUE`` (repeatable) or ``PYNCETTE_<OPTION>`` (``PYNCETTE_REDIS_URL``,
  ``PYNCETTE_SQLITE_DATABASE``...): a backend option; ``true``/``false`` and numbers are converted.

Run ``pyncette --help`` or ``pyncette COMMAND --help`` for the options; docs/operations.md has
examples of every command.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import json
import os
import sys
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, TypeVar

import anyio
import click

from pyncette.errors import PyncetteException, pyncette_error_in
from pyncette.log_format import LOG_FORMATS, configure_logging
from pyncette.model import DstFold, DstGap, TaskKey
from pyncette.plugins import create_plugin_manager, installed_backends, resolve_backend
from pyncette.pyncette import Pyncette, PyncetteContext
from pyncette.schedule import ScheduleError, build_schedule
from pyncette.task import Task

ENV_PREFIX = "PYNCETTE_"
LIST_PAGE_SIZE = 100
"""Instances fetched per store round trip by ``pyncette tasks list``."""
PROGRESS_THRESHOLD = 1_000
"""A listing reports its progress on stderr once it has fetched this many instances."""

T = TypeVar("T")


# Loading the app and configuring its backend


def load_app(reference: str, app_dir: str | None = ".") -> Pyncette:
    """Import ``module:attribute`` and return the app it names (calling it if it is a factory)."""
    module_name, _, attribute = reference.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise click.BadParameter(f"expected module:attribute, got {reference!r}", param_hint="APP")
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise click.BadParameter(f"cannot import module {module_name!r}: {exc}", param_hint="APP") from None
        raise
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.BadParameter(f"module {module_name!r} has no attribute {attribute!r}", param_hint="APP") from None
    if not isinstance(target, Pyncette) and callable(target):
        target = target()
    if not isinstance(target, Pyncette):
        raise click.BadParameter(f"{reference} is {type(target).__name__}, not a Pyncette app", param_hint="APP")
    return target


def parse_value(text: str) -> Any:
    """A backend option value from text: ``true``/``false``, integers and decimals are converted."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def backend_overrides(
    app: Pyncette, backend: str | None, pairs: tuple[str, ...], environ: Mapping[str, str]
) -> tuple[str | None, dict[str, Any]]:
    """The backend name and options that the command line and ``environ`` ask for.

    Options come from ``PYNCETTE_<OPTION>`` variables for the options of the chosen backend (or of
    any installed backend when none is chosen), then from ``-o OPTION=VALUE`` pairs, which win.
    """
    backends = installed_backends(app.plugin_manager)
    candidates = [backends[backend]] if backend in backends else list(backends.values())
    options: dict[str, Any] = {}
    for info in candidates:
        for option in info.options:
            value = environ.get(ENV_PREFIX + option.upper())
            if value is not None:
                options[option] = parse_value(value)
    for pair in pairs:
        option, separator, value = pair.partition("=")
        if not separator or not option.strip():
            raise click.BadParameter(f"expected OPTION=VALUE, got {pair!r}", param_hint="-o/--option")
        options[option.strip()] = parse_value(value)
    return backend, options


def configure_backend(app: Pyncette, backend: str | None, options: Mapping[str, Any]) -> None:
    """Point ``app`` at ``backend`` with ``options``; without a backend, add ``options`` to the app's own.

    Raises :class:`~pyncette.errors.ConfigurationError` (unknown backend or option) like the
    constructor does.
    """
    if backend is None and not options:
        return
    if backend is not None and backend != app.backend_name:
        merged = dict(options)
    else:
        merged = {**app.backend_options, **options}
        known = installed_backends(app.plugin_manager)
        if backend is None and app.backend_name in known:
            accepted = set(known[app.backend_name].options)
            backend = app.backend_name if set(options) <= accepted else None
            if backend is None:
                merged = dict(options)
        elif backend is None:  # a custom repository factory: pass the options on to it
            app.backend_options = merged
            return
    app.backend_name, app.repository_factory = resolve_backend(
        app.plugin_manager, backend=backend, repository_factory=None, options=merged
    )
    app.backend_options = merged


@contextlib.asynccontextmanager
async def open_context(app: Pyncette) -> AsyncIterator[PyncetteContext]:
    """Open the app's store for management commands, without fixtures and without registering tasks."""
    options = {**app.backend_options, "concurrency_limit": app.concurrency_limit, "batch_size": app.batch_size}
    async with app.repository_factory(**options) as repository:
        clock, clock_sync = await app._synchronized_clock(repository, None)
        yield PyncetteContext(app, repository, clock, {}, clock_sync=clock_sync)


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """Run ``func`` on an event loop; pyncette errors become a clear message and exit status 1."""
    try:
        return anyio.run(func)
    except Exception as exc:
        error = pyncette_error_in(exc)
        if error is None:
            raise
        raise click.ClickException(str(error)) from None


def _app_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that loads an app shares."""
    decorators = [
        click.argument("app_reference", metavar="APP"),
        click.option(
            "--backend",
            envvar="PYNCETTE_BACKEND",
            help="Installed backend to use instead of the app's own [env PYNCETTE_BACKEND].",
        ),
        click.option(
            "-o",
            "--option",
            "options",
            multiple=True,
            metavar="OPTION=VALUE",
            help="Backend option (repeatable), e.g. -o redis_url=redis://host [env PYNCETTE_<OPTION>].",
        ),
        click.option("--app-dir", default=".", show_default=True, help="Directory put first on the import path."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _prepare(app_reference: str, backend: str | None, options: tuple[str, ...], app_dir: str) -> Pyncette:
    app = load_app(app_reference, app_dir)
    name, values = backend_overrides(app, backend, options, os.environ)
    try:
        configure_backend(app, name, values)
    except PyncetteException as exc:
        raise click.ClickException(str(exc)) from None
    return app


# Commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="pyncette-core", prog_name="pyncette")
def cli() -> None:
    """Pyncette: a reliable distributed scheduler for async Python."""


@cli.command()
@_app_options
@click.option(
    "--log-level",
    envvar="PYNCETTE_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="[env PYNCETTE_LOG_LEVEL]",
)
@click.option(
    "--log-format",
    envvar="PYNCETTE_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    help="One line of text, or one JSON object per record [env PYNCETTE_LOG_FORMAT].",
)
def run(app_reference: str, backend: str | None, options: tuple[str, ...], app_dir: str, log_level: str, log_format: str) -> None:
    """Run APP (module:attribute) until SIGINT or SIGTERM.

    The first signal stops polling and lets running tasks finish; a second one exits at once. A
    configuration or store error at start is one logged error line and exit status 1.
    """
    configure_logging(log_level, log_format)
    app = _prepare(app_reference, backend, options, app_dir)
    try:
        app.main()
    except PyncetteException as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def backends(as_json: bool) -> None:
    """List the installed backend plugins, their distributions, versions and options."""
    found = installed_backends(create_plugin_manager())
    documents: list[dict[str, Any]] = []
    for name in sorted(found):
        info = found[name]
        try:
            version = importlib.metadata.version(info.distribution) if info.distribution else ""
        except importlib.metadata.PackageNotFoundError:
            version = ""
        documents.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": version,
                "description": info.description,
                "options": dict(info.options),
            }
        )
    if as_json:
        click.echo(json.dumps(documents, indent=2))
        return
    for document in documents:
        origin = f"{document['distribution']} {document['version']}".strip() or "?"
        click.secho(f"{document['name']}", bold=True, nl=False)
        click.echo(f"  ({origin})  {document['description']}")
        for option, description in document["options"].items():
            click.echo(f"    {option}: {description}")
        if not document["options"]:
            click.echo("    (no options)")


@cli.command()
@click.argument("expression")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone the expression is read in.")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(1, 10_000), help="How many fire times.")
@click.option("--after", help="Start after this ISO 8601 instant (default: now); a naive one is read in --tz.")
@click.option(
    "--dst-gap", type=click.Choice([gap.value for gap in DstGap]), help="Wall times that do not exist (default: by expression)."
)
@click.option(
    "--dst-fold",
    type=click.Choice([fold.value for fold in DstFold]),
    help="Wall times that occur twice (default: by expression).",
)
def preview(expression: str, timezone: str, count: int, after: str | None, dst_gap: str | None, dst_fold: str | None) -> None:
    """Print the next fire times of the cron EXPRESSION, with notes where daylight saving time changes.

    EXPRESSION has 5 fields, or 6 with seconds last ("* * * * * */10"), or is an alias (@daily).
    """
    try:
        schedule = build_schedule(schedule=expression, timezone=timezone, dst_gap=dst_gap, dst_fold=dst_fold)
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from None
    zone = schedule.zone
    start = _parse_instant(after, zone) if after else datetime.datetime.now(datetime.timezone.utc)
    click.echo(schedule.describe())
    previous = start.astimezone(zone)
    for run_at in schedule.next_runs(count, start):
        notes = dst_notes(previous, run_at)
        line = f"{run_at.isoformat()}  {run_at.strftime('%a')}"
        click.echo(line + (f"  # {'; '.join(notes)}" if notes else ""))
        previous = run_at


def _parse_instant(text: str, zone: datetime.tzinfo) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date and time: {text!r}", param_hint="--after") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def dst_notes(previous: datetime.datetime, run_at: datetime.datetime) -> list[str]:
    """Notes on a fire time next to a daylight saving transition (both arguments in the schedule's zone).

    A run whose UTC offset differs from the previous run's follows a transition; a run at a wall
    time that occurs twice is in a fold.
    """
    notes = []
    before, now = previous.utcoffset(), run_at.utcoffset()
    if before != now and before is not None and now is not None:
        direction = "clocks went forward" if now > before else "clocks went back"
        notes.append(f"{direction} since the previous run (UTC{_offset(before)} -> UTC{_offset(now)})")
    wall = run_at.replace(tzinfo=None)
    other = wall.replace(tzinfo=run_at.tzinfo, fold=1 - run_at.fold)
    if other.utcoffset() != now:
        occurrence = "first" if run_at.fold == 0 else "second"
        notes.append(f"{wall.time()} occurs twice today; this is the {occurrence} occurrence")
    return notes


def _offset(delta: datetime.timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@cli.command()
@_app_options
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the store.")
def check(app_reference: str, backend: str | None, options: tuple[str, ...], app_dir: str, timeout: float) -> None:
    """Import APP, list its tasks and check that its store is reachable.

    Exits with status 1 and a message when the app cannot be loaded or the store cannot be reached.
    """
    app = _prepare(app_reference, backend, options, app_dir)
    click.echo(f"app {app_reference}: backend {app.backend_name}, worker id {app.worker_id}")
    for task in app.tasks:
        kind = "partitioned dynamic task" if task.partition_count else "dynamic task" if task.dynamic else "task"
        plan = task.compiled_schedule.describe() if task.compiled_schedule else "schedule given per instance"
        state = "" if task.enabled else " (disabled)"
        click.echo(f"  {kind} {task.name}: {plan}{state}")
    if not app.tasks:
        click.echo("  warning: the app defines no tasks", err=True)

    async def probe() -> None:
        with anyio.fail_after(timeout):
            async with open_context(app) as context:
                await context.repository.get_task(TaskKey("__pyncette_check__", "probe"))

    try:
        anyio.run(probe)
    except TimeoutError:
        raise click.ClickException(f"store not reachable: backend {app.backend_name} did not answer within {timeout}s") from None
    except Exception as exc:
        error: BaseException = pyncette_error_in(exc) or exc
        raise click.ClickException(f"store not reachable: backend {app.backend_name}: {type(error).__name__}: {error}") from None
    click.echo(f"store reachable: backend {app.backend_name}")


# tasks


@cli.group()
def tasks() -> None:
    """Inspect and manage the tasks and dynamic instances of an app in its store."""


def _task_document(task: Task) -> dict[str, Any]:
    status = task.status
    document: dict[str, Any] = {"task": task.template.name, "instance": task.name if task.is_instance else None}
    if status is not None:
        document.update(
            next_run=status.next_run.isoformat(),
            paused=status.paused,
            locked_until=status.locked_until.isoformat() if status.locked_until else None,
            locked_by=status.locked_by,
            fencing_token=status.fencing_token,
            attempt=status.attempt,
            missed=status.missed,
            coalesced=status.coalesced,
            given_up=status.given_up,
        )
    if task.compiled_schedule is not None:
        document["schedule"] = task.compiled_schedule.describe()
    if task.extra_args:
        document["args"] = task.extra_args
    return document


def _state_word(task: Task, now: datetime.datetime) -> str:
    status = task.status
    if status is None:
        return "?"
    if status.paused:
        return "paused"
    if status.locked_until is not None and status.locked_until > now:
        return "running"
    return "due" if status.next_run <= now else "scheduled"


def _resolve_task(app: Pyncette, name: str) -> Task:
    for task in app.tasks:
        if task.name == name:
            return task
    known = ", ".join(sorted(t.name for t in app.tasks)) or "none"
    raise click.BadParameter(f"the app defines no task {name!r}; its tasks: {known}", param_hint="TASK")


def _instance_for(task: Task, instance: str | None) -> str | None:
    if task.dynamic and not instance:
        raise click.UsageError(f"{task.name} is a dynamic task: name the INSTANCE")
    if not task.dynamic and instance:
        raise click.UsageError(f"{task.name} is a static task: it has no instances")
    return instance


@tasks.command("list")
@_app_options
@click.argument("task_name", metavar="TASK")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many instances (default: all).")
@click.option("--page-size", default=LIST_PAGE_SIZE, show_default=True, type=click.IntRange(min=1), help="Per store round trip.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per instance (JSON lines).")
def list_tasks(
    app_reference: str,
    backend: str | None,
    options: tuple[str, ...],
    app_dir: str,
    task_name: str,
    limit: int | None,
    page_size: int,
    as_json: bool,
) -> None:
    """List the instances of TASK (a static task lists itself), page by page.

    Long listings report their progress on stderr.
    """
    app = _prepare(app_reference, backend, options, app_dir)
    task = _resolve_task(app, task_name)

    async def listing() -> int:
        shown = 0
        token: str | None = None
        async with open_context(app) as context:
            now = context.clock.now()
            while True:
                size = page_size if limit is None else min(page_size, limit - shown)
                page = await context.list_tasks(task, limit=size, continuation_token=token)
                for found in page.tasks:
                    if as_json:
                        click.echo(json.dumps(_task_document(found)))
                    else:
                        assert found.status is not None
                        name = found.name if found.is_instance else found.full_name
                        click.echo(f"{name}\t{_state_word(found, now)}\tnext {found.status.next_run.isoformat()}")
                shown += len(page.tasks)
                token = page.continuation_token
                if token is None or (limit is not None and shown >= limit):
                    break
                if shown >= PROGRESS_THRESHOLD and shown // page_size % 10 == 0:
                    click.echo(f"... {shown} instances so far", err=True)
        return shown

    shown = run_async(listing)
    click.echo(f"{shown} instance(s)", err=True)


@tasks.command("show")
@_app_options
@click.argument("task_name", metavar="TASK")
@click.argument("instance", required=False)
@click.option("-n", "count", default=5, show_default=True, help="Upcoming runs to show.")
def show_task(
    app_reference: str,
    backend: str | None,
    options: tuple[str, ...],
    app_dir: str,
    task_name: str,
    instance: str | None,
    count: int,
) -> None:
    """Show the stored state of TASK (a static task) or of its INSTANCE, as JSON, with the next runs."""
    app = _prepare(app_reference, backend, options, app_dir)
    task = _resolve_task(app, task_name)
    instance = _instance_for(task, instance)

    async def show() -> dict[str, Any]:
        async with open_context(app) as context:
            found = await context.get_task(task, instance)
            if found is None:
                raise click.ClickException(f"{task.name}{'/' + instance if instance else ''} is not in the store")
            document = _task_document(found)
            now = context.clock.now()
            document["state"] = _state_word(found, now)
            document["next_runs"] = [moment.isoformat() for moment in found.next_runs(count, after=now)]
            return document

    click.echo(json.dumps(run_async(show), indent=2))


def _management_command(name: str, help_text: str, action: Callable[[PyncetteContext, Task, str | None], Awaitable[str]]) -> None:
    @tasks.command(name, help=help_text)
    @_app_options
    @click.argument("task_name", metavar="TASK")
    @click.argument("instance", required=False)
    def command(
        app_reference: str, backend: str | None, options: tuple[str, ...], app_dir: str, task_name: str, instance: str | None
    ) -> None:
        app = _prepare(app_reference, backend, options, app_dir)
        task = _resolve_task(app, task_name)
        selected = _instance_for(task, instance)

        async def perform() -> str:
            async with open_context(app) as context:
                return await action(context, task, selected)

        click.echo(run_async(perform))


def _label(task: Task, instance: str | None) -> str:
    return f"{task.name}/{instance}" if instance else task.name


async def _pause(context: PyncetteContext, task: Task, instance: str | None) -> str:
    await context.pause_task(task, instance)
    return f"paused {_label(task, instance)}"


async def _resume(context: PyncetteContext, task: Task, instance: str | None) -> str:
    await context.resume_task(task, instance)
    return f"resumed {_label(task, instance)}"


async def _unschedule(context: PyncetteContext, task: Task, instance: str | None) -> str:
    if not task.dynamic:
        raise click.UsageError(f"{task.name} is a static task; only dynamic instances can be unscheduled")
    existed = await context.repository.unregister_task(context.clock.now(), task.key_for(instance))
    return f"unscheduled {_label(task, instance)}" if existed else f"{_label(task, instance)} was not scheduled"


async def _run_now(context: PyncetteContext, task: Task, instance: str | None) -> str:
    key = task.key_for(instance)
    now = context.clock.now()
    state = await context.repository.get_task(key)
    if state is None:
        raise click.ClickException(f"{_label(task, instance)} is not in the store")
    await context.repository.set_paused(now, key, state.paused, now)
    notes = []
    if state.paused:
        notes.append("it is paused: it runs once resumed")
    if state.is_locked(now):
        notes.append("it is running now: that run's commit sets its next run and may override this")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return f"{_label(task, instance)} is due now (was {state.next_run.isoformat()}){suffix}"


_management_command("pause", "Pause TASK or its INSTANCE: it is not run until resumed.", _pause)
_management_command("resume", "Resume a paused TASK or INSTANCE (missed slots follow its misfire policy).", _resume)
_management_command("unschedule", "Remove the INSTANCE of a dynamic TASK from the store.", _unschedule)
_management_command(
    "run-now", "Make TASK or its INSTANCE due at once: a worker runs it on its next poll, then its schedule goes on.", _run_now
)


def main() -> None:
    """Entry point of the ``pyncette`` console script."""
    cli(prog_name="pyncette")


__all__ = ["backend_overrides", "cli", "configure_backend", "dst_notes", "load_app", "main", "open_context", "parse_value"]
