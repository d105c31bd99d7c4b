"""Task definition API and the errors raised for bad input, where the mistake is made."""

from __future__ import annotations

import datetime
import math

import pytest

from pyncette import Context, ExecutionMode, FailureMode, Task
from pyncette.errors import ConfigurationError, TaskDefinitionError
from pyncette.model import CatchUp
from pyncette.testing import FakeClock
from tests.core.conftest import make_app

pytestmark = pytest.mark.anyio


async def noop(context: Context) -> None:
    pass


def test_task_decorator_returns_a_callable_task() -> None:
    app = make_app()
    called = []

    @app.task(interval=datetime.timedelta(seconds=5), user="x")
    async def job(context: Context) -> None:
        called.append(context)

    assert isinstance(job, Task)
    assert job.name == "job" and job.extra_args == {"user": "x"} and not job.dynamic
    assert app.tasks == [job]


async def test_called_task_runs_its_function() -> None:
    app = make_app()
    seen: list[object] = []

    @app.task(interval=5)
    async def job(context: object) -> None:
        seen.append(context)

    await job("ctx")
    assert seen == ["ctx"]


def test_stacked_decorators_with_explicit_names() -> None:
    app = make_app()

    @app.task(name="every-minute", schedule="* * * * *")
    @app.task(name="every-ten-seconds", schedule="* * * * * */10")
    async def job(context: Context) -> None:
        pass

    assert [t.name for t in app.tasks] == ["every-ten-seconds", "every-minute"]
    assert app.tasks[0].func is app.tasks[1].func


def test_duplicate_task_names_are_rejected() -> None:
    app = make_app()
    app.task(name="a", interval=1)(noop)
    with pytest.raises(TaskDefinitionError, match=r"'a'.*already defined"):
        app.task(name="a", interval=2)(noop)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule": "61 * * * *"}, "61 \\* \\* \\* \\*"),
        ({"schedule": "not a cron"}, "not a cron"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({}, "one of schedule, interval"),
        ({"schedule": "* * * * *", "interval": 5}, "schedule"),
        ({"interval": 0}, "interval must be positive, got 0s"),
        ({"interval": datetime.timedelta(seconds=-1)}, "interval must be positive, got -1s"),
        ({"interval": -3}, "interval must be positive, got -3s"),
        ({"interval": datetime.timedelta(minutes=-90)}, "interval must be positive, got -90m"),
        ({"interval": -0.25}, "interval must be positive, got -0.25s"),
        ({"interval": "5s"}, "interval must be a timedelta or a number of seconds, got '5s'"),
        (
            {"interval": 5, "payload": object()},
            "extra arguments must be JSON-serialisable: argument 'payload' is a value of type object",
        ),
        (
            {"interval": 5, "execution_mode": ExecutionMode.AT_MOST_ONCE, "failure_mode": FailureMode.UNLOCK},
            r"failure_mode=FailureMode\.UNLOCK applies only to ExecutionMode\.AT_LEAST_ONCE, not to ExecutionMode\.AT_MOST_ONCE",
        ),
        (
            {"interval": 5, "execution_mode": "at_most_once", "failure_mode": "commit"},
            r"failure_mode=FailureMode\.COMMIT applies only",
        ),
        (
            {"interval": 5, "execution_mode": ExecutionMode.AT_MOST_ONCE, "max_attempts": 3},
            r"retries \(max_attempts=3\) apply only",
        ),
        ({"interval": 5, "max_attempts": 0}, "max_attempts"),
        ({"interval": 5, "catch_up": "sometimes"}, "catch_up"),
        ({"interval": 5, "lease_duration": 0}, "lease_duration must be positive, got 0s"),
        ({"execute_at": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)}, "execute_at"),
    ],
)
def test_bad_static_definitions_fail_at_definition_naming_task_and_value(options: dict[str, object], message: str) -> None:
    app = make_app()
    with pytest.raises(TaskDefinitionError, match=message) as caught:
        app.task(name="bad_task", **options)(noop)
    assert "bad_task" in str(caught.value)
    assert app.tasks == []


@pytest.mark.parametrize("name", ["", "a:b", "x" * 201])
def test_bad_task_names(name: str) -> None:
    with pytest.raises(TaskDefinitionError):
        make_app().task(name=name, interval=1)(noop)


def test_enum_options_accept_member_names() -> None:
    task = make_app().task(interval=5, failure_mode="unlock", execution_mode="AT_LEAST_ONCE", catch_up="Skip")(noop)
    assert (task.failure_mode, task.execution_mode, task.catch_up) == (
        FailureMode.UNLOCK,
        ExecutionMode.AT_LEAST_ONCE,
        CatchUp.SKIP,
    )


def test_fast_forward_maps_to_catch_up_latest() -> None:
    app = make_app()
    task = app.task(interval=5, fast_forward=True)(noop)
    assert task.catch_up is CatchUp.LATEST
    assert "fast_forward" not in task.extra_args


async def test_fast_forward_on_an_instance_maps_to_catch_up_latest(clock: FakeClock) -> None:
    app = make_app()
    template = app.dynamic_task(name="tpl")(noop)
    instance = template.instantiate("a", interval=5, fast_forward=True)
    assert instance.catch_up is CatchUp.LATEST and instance.extra_args == {}
    explicit = template.instantiate("b", interval=5, fast_forward=True, catch_up="skip")
    assert explicit.catch_up is CatchUp.SKIP
    async with app.create(clock=clock) as ctx:
        scheduled = await ctx.schedule_task(template, "c", interval=5, fast_forward=True, user=1)
        assert scheduled.catch_up is CatchUp.LATEST and scheduled.extra_args == {"user": 1}
        stored = await ctx.get_task(template, "c")
        assert stored is not None and stored.catch_up is CatchUp.LATEST and stored.extra_args == {"user": 1}


def test_dynamic_template_needs_no_schedule_but_instances_do() -> None:
    app = make_app()
    template = app.dynamic_task()(noop)
    with pytest.raises(TaskDefinitionError, match="noop/i1"):
        template.instantiate("i1")
    instance = template.instantiate("i1", interval=10, user_id=7)
    assert instance.name == "i1" and instance.parent_task is template and instance.extra_args == {"user_id": 7}


@pytest.mark.parametrize("name", ["", "x" * 513, 5])
def test_bad_instance_names(name: object) -> None:
    template = make_app().dynamic_task()(noop)
    with pytest.raises(TaskDefinitionError, match="instance names"):
        template.instantiate(name, interval=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"when": datetime.datetime(2030, 1, 1)}, "argument 'when' is a value of type datetime, which JSON cannot represent"),
        ({"ok": 1, "tags": {"a", "b"}}, "argument 'tags' is a value of type set, which JSON cannot represent"),
        (
            {"payload": {"items": [1, 2, b"raw"]}},
            "argument 'payload' at ['items'][2] is a value of type bytes, which JSON cannot represent",
        ),
        ({"ratio": math.nan}, "argument 'ratio' is nan, which JSON cannot represent"),
        ({"limits": {"low": -math.inf}}, "argument 'limits' at ['low'] is -inf, which JSON cannot represent"),
        ({"grid": {(1, 2): "x"}}, "argument 'grid' has a key of type tuple ((1, 2)); JSON keys are strings"),
        ({"mixed": [{1: "a", "b": 2}]}, "argument 'mixed' at [0] mixes number and text keys, which cannot be sorted"),
    ],
)
def test_non_json_instance_arguments_are_named_with_their_type(arguments: dict[str, object], message: str) -> None:
    template = make_app().dynamic_task(name="tpl")(noop)
    with pytest.raises(TaskDefinitionError) as caught:
        template.instantiate("i", interval=1, **arguments)
    assert str(caught.value) == f"task 'tpl/i': instance arguments must be JSON-serialisable: {message}"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("execution_mode", ExecutionMode.AT_MOST_ONCE),
        ("failure_mode", FailureMode.UNLOCK),
        ("lease_duration", 30),
        ("heartbeat_interval", 5),
        ("cancel_on_lease_lost", True),
        ("enabled", False),
        ("partition_count", 4),
        ("status", None),
    ],
)
def test_options_of_the_whole_task_are_refused_on_an_instance(option: str, value: object) -> None:
    """An instance cannot carry its own execution mode, lease...: they never silently become arguments."""
    template = make_app().dynamic_task(name="tpl")(noop)
    with pytest.raises(TaskDefinitionError) as caught:
        template.instantiate("i", interval=1, **{option: value})
    assert str(caught.value) == (
        f"task 'tpl/i': {option!r} cannot be given to an instance: they are options of the whole task; "
        "to give the task an argument of that name use extra_args={...}"
    )
    instance = template.instantiate("i", interval=1, extra_args={option: "an argument"})
    assert instance.extra_args == {option: "an argument"}
    assert instance.execution_mode is template.execution_mode and instance.lease_duration == template.lease_duration


def test_fast_forward_on_an_instance_is_its_catch_up_policy_not_an_argument() -> None:
    template = make_app().dynamic_task()(noop)
    instance = template.instantiate("i", interval=1, fast_forward=True)
    assert instance.catch_up is CatchUp.LATEST and instance.extra_args == {}


def test_retries_of_an_instance_of_an_at_most_once_template_are_refused_with_the_value() -> None:
    template = make_app().dynamic_task(name="tpl", execution_mode=ExecutionMode.AT_MOST_ONCE)(noop)
    with pytest.raises(TaskDefinitionError, match=r"task 'tpl/i': retries \(max_attempts=2\) apply only"):
        template.instantiate("i", interval=1, max_attempts=2)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "poll_interval",
            datetime.timedelta(seconds=-3),
            "poll_interval must be a positive timedelta or number of seconds, got -3s",
        ),
        ("store_timeout", -0.5, "store_timeout must be a positive timedelta or number of seconds, got -0.5s"),
        (
            "shutdown_grace",
            datetime.timedelta(minutes=-2),
            "shutdown_grace must be a timedelta or number of seconds >= 0, got -2m",
        ),
        ("shutdown_grace", "x", "shutdown_grace must be a timedelta or number of seconds >= 0, got 'x'"),
    ],
)
def test_bad_app_durations_are_shown_readably(option: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_app(**{option: value})
    assert str(caught.value) == message


def test_static_task_cannot_be_instantiated() -> None:
    task = make_app().task(interval=1)(noop)
    with pytest.raises(TaskDefinitionError, match="only a dynamic task"):
        task.instantiate("x", interval=1)


def test_instance_overrides_template_schedule() -> None:
    template = make_app().dynamic_task(interval=60)(noop)
    instance = template.instantiate("x", schedule="0 * * * *")
    assert instance.schedule == "0 * * * *" and instance.interval is None


def test_partitioned_task_scopes_and_selector() -> None:
    app = make_app()
    task = app.partitioned_task(partition_count=4, enabled_partitions=[1, 3])(noop)
    assert task.scopes() == ["noop:1", "noop:3"]
    assert task.all_scopes() == ["noop:0", "noop:1", "noop:2", "noop:3"]
    key = task.key_for("user-42")
    assert key.task == f"noop:{task.partition_selector(4, 'user-42')}"
    assert key == task.key_for("user-42")
    with pytest.raises(TaskDefinitionError, match="enabled_partitions"):
        app.partitioned_task(name="p2", partition_count=2, enabled_partitions=[5])(noop)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency_limit", 0),
        ("batch_size", -1),
        ("poll_interval", 0),
        ("concurrency_limit", "10"),
        ("poll_backoff_max", 0),
        ("store_timeout", -1),
    ],
)
def test_bad_app_options(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        make_app(**{option: value})


def test_fixture_must_be_async_generator() -> None:
    app = make_app()

    async def not_a_generator() -> None:
        pass

    with pytest.raises(ConfigurationError, match="async generator"):
        app.fixture()(not_a_generator)


@pytest.mark.parametrize("keyword", ["func", "dynamic", "status", "compiled_schedule", "parent_task"])
def test_keywords_naming_internal_fields_are_refused_and_extra_args_carries_them(keyword: str) -> None:
    app = make_app()

    async def job(context: Context) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=f"'{keyword}' cannot be given to a task decorator.*extra_args"):
        app.task(interval=datetime.timedelta(seconds=1), **{keyword: 1})(job)
    task = app.task(name="carried", interval=datetime.timedelta(seconds=1), extra_args={keyword: 1})(job)
    assert task.extra_args == {keyword: 1} and not task.is_instance and task.status is None
