"""Hostile schedule definitions, names and arguments (hypothesis).

Every definition is either rejected at once with a :class:`~pyncette.errors.ConfigurationError`
(``TaskDefinitionError`` naming the task) or accepted, and an accepted one never stops the loop:
two minutes of schedule run under a controllable clock while a control task keeps its own schedule.
Where a value is certainly invalid (a non-JSON argument, an instance name of the wrong length, a
non-positive interval, an unknown time zone), rejection is required.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyncette import Context, Pyncette, Task
from pyncette.errors import ConfigurationError, PyncetteError, TaskDefinitionError
from pyncette.repository import MAX_INSTANCE_NAME_LENGTH
from pyncette.task import _INTERNAL_FIELDS
from pyncette.testing import FakeClock, run_until

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)
SPAN = datetime.timedelta(minutes=2)
CONTROL_RUNS = 12  # the control task runs every 10 seconds for SPAN
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cron_fields = st.one_of(
    st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "mon-fri", "L", "W", "?", "*/0", "1,2,3", "#", "-", "jan", "99"]),
    st.text(alphabet="0123456789*/,-LW#?", min_size=1, max_size=4),
)
crons = st.one_of(st.lists(cron_fields, min_size=0, max_size=7).map(" ".join), st.text(max_size=25))
# NaN, infinite and out-of-range intervals have their own cases below. Positive intervals stay
# at half a second or more, so that an hour of an accepted schedule stays cheap to simulate.
intervals = st.one_of(
    st.timedeltas(min_value=datetime.timedelta(seconds=-5), max_value=datetime.timedelta(0)),
    st.timedeltas(min_value=datetime.timedelta(seconds=0.5), max_value=datetime.timedelta(days=2)),
    st.floats(min_value=-10, max_value=0) | st.floats(min_value=0.5, max_value=1e8),
    st.integers(min_value=-10, max_value=10**7),
    st.text(max_size=5),
    st.booleans(),
)
execute_ats = st.one_of(
    st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1)),  # naive
    st.text(max_size=10),
    st.integers(),
)
zones = st.one_of(
    st.none(), st.sampled_from(["UTC", "Europe/Dublin", "Asia/Kathmandu", "Nope/Zone", "", "../etc/passwd"]), st.text(max_size=12)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
not_json = st.one_of(
    st.sets(st.integers(), min_size=1, max_size=2),
    st.binary(min_size=1, max_size=3),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.builds(object),
    st.just(datetime.datetime(2030, 1, 1)),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=1).map(lambda d: {"nested": [d, {(1, 2): 3}]}),
)
# Keywords the decorators and instantiate() read as task options (and `name`, which the tests pass
# themselves): an argument named like one would be an option, not an argument. Names of the fields
# the scheduler sets itself (func, status, ...) stay in: a decorator must refuse them clearly.
RESERVED = {field.name for field in attrs.fields(Task)} - _INTERNAL_FIELDS | {"fast_forward", "force"}
argument_names = st.text(alphabet=st.characters(categories=["Ll"]), min_size=1, max_size=8).filter(lambda k: k not in RESERVED)
arguments = st.dictionaries(argument_names, st.one_of(json_values, not_json), max_size=3)
instance_names = st.one_of(
    st.text(max_size=20),
    st.text(min_size=MAX_INSTANCE_NAME_LENGTH - 2, max_size=MAX_INSTANCE_NAME_LENGTH + 3),
    st.sampled_from(["", "a/b", "a:b", "../x", "x\x00y", "' OR 1=1 --", "${jndi:x}", "名前", "%s%n", "\u202e"]),
)


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(["schedule", "interval", "execute_at"]), max_size=2, unique=True))
    options: dict[str, Any] = {}
    for kind in kinds:
        options[kind] = draw({"schedule": crons, "interval": intervals, "execute_at": execute_ats}[kind])
    timezone = draw(zones)
    if timezone is not None:
        options["timezone"] = timezone
    return options


def certainly_invalid(options: dict[str, Any], args: dict[str, Any], name: str | None = None) -> str | None:
    """Why a definition must be rejected, when that is clear without a cron parser."""
    if name is not None and not 1 <= len(name) <= MAX_INSTANCE_NAME_LENGTH:
        return "instance name length"
    if any(not _is_json(value) for value in args.values()):
        return "argument not JSON"
    interval = options.get("interval")
    if "interval" in options:
        if isinstance(interval, bool) or not isinstance(interval, (int, float, datetime.timedelta)):
            return "interval type"
        seconds = interval.total_seconds() if isinstance(interval, datetime.timedelta) else interval
        if not seconds > 0 or math.isinf(seconds):
            return "interval not positive and finite"
    zone = options.get("timezone")
    if isinstance(zone, str) and zone not in zoneinfo.available_timezones() and zone.upper() != "UTC":
        return "unknown time zone"
    return None


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def control_app() -> tuple[Pyncette, list[datetime.datetime]]:
    app = Pyncette(backend="memory", poll_interval=datetime.timedelta(seconds=5))
    control: list[datetime.datetime] = []

    @app.task(interval=datetime.timedelta(seconds=10))
    async def control_task(context: Context) -> None:
        control.append(context.scheduled_at)

    return app, control


def assert_clear(error: PyncetteError, task: str) -> None:
    assert isinstance(error, ConfigurationError), type(error)
    if isinstance(error, TaskDefinitionError):
        assert error.task.startswith(task) or task in str(error), str(error)
    assert str(error), "the error says what is wrong"


@SETTINGS
@given(name=instance_names, options=schedules(), args=arguments)
def test_instance_definitions_are_rejected_clearly_or_run_without_stopping_the_loop(
    name: str, options: dict[str, Any], args: dict[str, Any]
) -> None:
    app, control = control_app()
    ran: list[str] = []

    @app.dynamic_task()
    async def hostile(context: Context) -> None:
        ran.append(context.task.name)

    async def scenario() -> PyncetteError | None:
        clock = FakeClock(START)
        async with app.create(clock=clock) as ctx:
            try:
                await ctx.schedule_task(hostile, name, **options, **args)
            except PyncetteError as exc:
                rejected: PyncetteError | None = exc
            else:
                rejected = None
            await run_until(ctx, START + SPAN)
            if rejected is None:
                assert await ctx.get_task(hostile, name) is not None or ran, "an accepted instance is stored or has run"
        return rejected

    rejected = anyio.run(scenario)
    reason = certainly_invalid(options, args, name)
    if reason is not None:
        assert rejected is not None, f"accepted although invalid ({reason})"
    if rejected is not None:
        assert_clear(rejected, "hostile")
    assert len(control) == CONTROL_RUNS, "the loop kept running the control task"


@SETTINGS
@given(name=st.one_of(st.text(max_size=210), st.sampled_from(["", "a:b", "x\x00", "ok"])), options=schedules(), args=arguments)
def test_static_task_definitions_are_rejected_clearly_or_run_without_stopping_the_loop(
    name: str, options: dict[str, Any], args: dict[str, Any]
) -> None:
    app, control = control_app()
    try:
        app.task(name=name, **options, **args)(_noop)
    except PyncetteError as exc:
        assert_clear(exc, name)
        return
    assert certainly_invalid(options, args) is None, "accepted although invalid"
    assert 1 <= len(name) <= 200 and ":" not in name, "task names are 1-200 characters without ':'"

    async def scenario() -> None:
        clock = FakeClock(START)
        async with app.create(clock=clock) as ctx:
            await run_until(ctx, START + SPAN)

    anyio.run(scenario)
    assert len(control) == CONTROL_RUNS


async def _noop(context: Context) -> None:
    del context


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        pytest.param({"schedule": "61 * * * *"}, "61", id="cron-out-of-range"),
        pytest.param({"schedule": "* * * * *", "interval": 5}, "schedule", id="cron-and-interval"),
        pytest.param({"interval": 0}, "interval", id="interval-zero"),
        pytest.param({"interval": -1}, "interval", id="interval-negative"),
        pytest.param({"interval": math.nan}, "interval", id="interval-nan"),
        pytest.param({"interval": math.inf}, "interval", id="interval-inf"),
        pytest.param({"interval": 1e14}, "interval", id="interval-beyond-timedelta"),
        pytest.param({"interval": 3e11}, "interval", id="interval-first-run-after-year-9999"),
        pytest.param({"schedule": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons", id="unknown-zone"),
        pytest.param({"interval": 5, "payload": {1, 2}}, "JSON", id="argument-set"),
        pytest.param({"interval": 5, "payload": math.inf}, "JSON", id="argument-inf"),
        pytest.param({"interval": 5, "payload": b"\x00"}, "JSON", id="argument-bytes"),
    ],
)
def test_each_invalid_instance_is_rejected_with_the_task_and_the_value_in_the_message(
    options: dict[str, Any], fragment: str
) -> None:
    app, _ = control_app()

    @app.dynamic_task()
    async def hostile(context: Context) -> None:
        del context

    async def scenario() -> None:
        async with app.create(clock=FakeClock(START)) as ctx:
            with pytest.raises(TaskDefinitionError) as caught:
                await ctx.schedule_task(hostile, "victim", **options)
            assert "hostile/victim" in str(caught.value) and fragment.lower() in str(caught.value).lower(), str(caught.value)
            assert await ctx.get_task(hostile, "victim") is None, "nothing was stored"

    anyio.run(scenario)


@SETTINGS
@given(name=st.text(min_size=1, max_size=40), value=json_values)
def test_any_instance_name_and_json_argument_round_trip_through_sqlite(name: str, value: Any) -> None:
    """Names and arguments reach the store as data: quotes, NULs, surrogates and all."""
    pytest.importorskip("pyncette.sqlite")
    app = Pyncette(backend="sqlite", sqlite_database=":memory:", poll_interval=datetime.timedelta(seconds=5))
    seen: list[Any] = []

    @app.dynamic_task()
    async def hostile(context: Context) -> None:
        seen.append((context.task.name, context.args["value"]))

    async def scenario() -> None:
        clock = FakeClock(START)
        async with app.create(clock=clock) as ctx:
            await ctx.schedule_task(hostile, name, execute_at=START + datetime.timedelta(seconds=1), value=value)
            await run_until(ctx, START + datetime.timedelta(seconds=5))

    anyio.run(scenario)
    assert seen == [(name, value)]
