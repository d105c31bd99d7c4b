"""Schedules: building and validation, cron in UTC and in zones, intervals, once-off, jitter."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from pyncette.errors import ConfigurationError
from pyncette.model import DstFold, DstGap
from pyncette.schedule import (
    CronSchedule,
    IntervalSchedule,
    OnceSchedule,
    Schedule,
    ScheduleError,
    build_schedule,
    jitter_offset,
)

UTC = dt.timezone.utc


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def take(schedule: Schedule, start: dt.datetime, n: int) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    slot = schedule.first_run(start)
    while slot is not None and len(out) < n:
        out.append(slot)
        slot = schedule.next_after(slot)
    return out


# ---------------------------------------------------------------------------------------------
# build_schedule: what it builds
# ---------------------------------------------------------------------------------------------


def test_build_cron_defaults_to_utc() -> None:
    schedule = build_schedule(schedule="*/5 * * * *")
    assert isinstance(schedule, CronSchedule)
    assert schedule.zone == zoneinfo.ZoneInfo("UTC")
    assert schedule.first_run(utc(2026, 1, 1, 12, 3, 7)) == utc(2026, 1, 1, 12, 5)


@pytest.mark.parametrize("interval", [dt.timedelta(seconds=90), 90, 90.0])
def test_build_interval_accepts_timedelta_and_seconds(interval: object) -> None:
    schedule = build_schedule(interval=interval)  # type: ignore[arg-type]
    assert schedule == IntervalSchedule(dt.timedelta(seconds=90))


def test_build_once_keeps_aware_instant() -> None:
    at = dt.datetime(2026, 5, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Dublin"))
    schedule = build_schedule(execute_at=at)
    assert isinstance(schedule, OnceSchedule)
    assert schedule.first_run(utc(2027, 1, 1)) == utc(2026, 5, 1, 8, 0)


def test_build_once_naive_read_in_timezone() -> None:
    schedule = build_schedule(execute_at=dt.datetime(2026, 5, 1, 9, 0), timezone="America/New_York")
    assert schedule.first_run(utc(2026, 1, 1)) == utc(2026, 5, 1, 13, 0)
    assert schedule.next_runs(1, utc(2026, 1, 1))[0].utcoffset() == dt.timedelta(hours=-4)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of"),
        ({"schedule": "* * * * *", "interval": 5}, "schedule, interval"),
        ({"interval": 5, "execute_at": utc(2026, 1, 1)}, "interval, execute_at"),
        ({"schedule": "61 * * * *"}, "'61 * * * *'"),
        ({"schedule": "* * * *"}, "'* * * *'"),
        ({"schedule": "* * * * * * *"}, "got 7"),
        ({"schedule": "0 0 31 2 *"}, "never matches"),
        ({"schedule": "H * * * *"}, "'H * * * *'"),
        ({"schedule": "R * * * *"}, "'R * * * *'"),
        ({"schedule": "@reboot"}, "'@reboot'"),
        ({"schedule": 5}, "5"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "'Mars/Olympus_Mons'"),
        ({"schedule": "* * * * *", "timezone": ""}, "''"),
        ({"schedule": "* * * * *", "timezone": 3}, "3"),
        ({"schedule": "* * * * *", "dst_gap": "sideways"}, "'sideways'"),
        ({"schedule": "* * * * *", "dst_fold": "middle"}, "'middle'"),
        ({"interval": 0}, "interval must be positive, got 0s"),
        ({"interval": -5}, "interval must be positive, got -5s"),
        ({"interval": dt.timedelta(0)}, "positive"),
        ({"interval": float("nan")}, "nan"),
        ({"interval": float("inf")}, "inf"),
        ({"interval": True}, "True"),
        ({"interval": "5"}, "'5'"),
        ({"interval": 5, "timezone": "UTC"}, "'UTC'"),
        ({"interval": 5, "dst_gap": DstGap.SKIP}, "dst_gap"),
        ({"execute_at": utc(2026, 1, 1), "dst_fold": "first"}, "dst_fold"),
        ({"execute_at": dt.datetime(2026, 1, 1)}, "2026-01-01T00:00:00"),
        ({"execute_at": "2026-01-01"}, "'2026-01-01'"),
        ({"execute_at": utc(2026, 1, 1), "jitter": 5}, "jitter"),
        ({"interval": 60, "jitter": 60}, "0:01:00"),
        ({"interval": 60, "jitter": -1}, "negative"),
        ({"interval": 60, "jitter": "1"}, "'1'"),
        ({"schedule": "*/15 * * * *", "jitter": dt.timedelta(minutes=15)}, "0:15:00"),
        ({"schedule": "0 9,10 * * *", "jitter": dt.timedelta(hours=2)}, "1:00:00"),
        ({"schedule": "* * * * *", "jitter_key": 5}, "5"),
    ],
)
def test_build_rejects_bad_input_naming_the_value(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ScheduleError) as info:
        build_schedule(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("@hourly", utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 11)),
        ("@daily", utc(2026, 1, 1, 10, 30), utc(2026, 1, 2)),
        ("@midnight", utc(2026, 1, 1, 10, 30), utc(2026, 1, 2)),
        ("@weekly", utc(2026, 1, 1, 10, 30), utc(2026, 1, 4)),
        ("@monthly", utc(2026, 1, 1, 10, 30), utc(2026, 2, 1)),
        ("@yearly", utc(2026, 1, 1, 10, 30), utc(2027, 1, 1)),
        ("@annually", utc(2026, 1, 1, 10, 30), utc(2027, 1, 1)),
        ("0 0 L * *", utc(2026, 2, 3), utc(2026, 2, 28)),
        ("0 0 * * 5#2", utc(2026, 1, 1), utc(2026, 1, 9)),
        ("0 12 * * mon-fri", utc(2026, 1, 2, 13), utc(2026, 1, 5, 12)),
        ("0 0 13 * 5", utc(2026, 1, 1), utc(2026, 1, 2)),  # day-of-month OR day-of-week
        ("  */10 * * * *  ", utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 10)),
    ],
)
def test_cron_expressions(expression: str, now: dt.datetime, expected: dt.datetime) -> None:
    assert build_schedule(schedule=expression).first_run(now) == expected


def test_cron_seconds_field_is_last() -> None:
    schedule = build_schedule(schedule="* * * * * */10")
    assert take(schedule, utc(2026, 1, 1, 0, 0, 3), 4) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 40),
    ]
    schedule = build_schedule(schedule="30 * * * * 15")
    assert take(schedule, utc(2026, 1, 1), 2) == [utc(2026, 1, 1, 0, 30, 15), utc(2026, 1, 1, 1, 30, 15)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 1, 1, 12, 0), utc(2026, 1, 1, 12, 1)),  # strictly after an exact match
        (utc(2026, 1, 1, 11, 59, 59, 999999), utc(2026, 1, 1, 12, 0)),
        (utc(2026, 1, 1, 12, 0, 0, 1), utc(2026, 1, 1, 12, 1)),
    ],
)
def test_cron_first_run_is_strictly_after_now(now: dt.datetime, expected: dt.datetime) -> None:
    assert build_schedule(schedule="* * * * *").first_run(now) == expected


def test_cron_evaluated_in_zone_returned_in_utc() -> None:
    schedule = build_schedule(schedule="0 9 * * *", timezone="Asia/Kolkata")
    first = schedule.first_run(utc(2026, 6, 1))
    assert first == utc(2026, 6, 1, 3, 30)
    assert first is not None
    assert first.tzinfo is UTC
    assert schedule.next_after(first) == utc(2026, 6, 2, 3, 30)
    preview = schedule.next_runs(2, utc(2026, 6, 1))
    assert [run.isoformat() for run in preview] == ["2026-06-01T09:00:00+05:30", "2026-06-02T09:00:00+05:30"]


@pytest.mark.parametrize("name", ["europe/dublin", "EUROPE/DUBLIN", " Europe/Dublin "])
def test_zone_names_in_any_case_mean_the_canonical_zone(name: str) -> None:
    schedule = build_schedule(schedule="0 9 * * *", timezone=name)
    assert schedule.zone == zoneinfo.ZoneInfo("Europe/Dublin")


def test_unknown_zone_suggests_a_close_name() -> None:
    with pytest.raises(ScheduleError, match=r"unknown time zone 'Europe/Dublinn'; did you mean 'Europe/Dublin'\?"):
        build_schedule(schedule="0 9 * * *", timezone="Europe/Dublinn")


def test_cron_accepts_tzinfo_objects() -> None:
    fixed = dt.timezone(dt.timedelta(hours=-3))
    schedule = build_schedule(schedule="0 9 * * *", timezone=fixed)
    assert schedule.first_run(utc(2026, 6, 1)) == utc(2026, 6, 1, 12)
    zone = zoneinfo.ZoneInfo("Europe/Dublin")
    assert build_schedule(schedule="0 9 * * *", timezone=zone) == build_schedule(schedule="0 9 * * *", timezone=zone)


class FakePytzZone(dt.tzinfo):
    """Looks like a pytz zone: it has ``localize`` and ``zone``, and ignores ``fold``."""

    zone = "America/New_York"

    def localize(self, moment: dt.datetime) -> dt.datetime:
        raise NotImplementedError

    def utcoffset(self, moment: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=-4, minutes=-56)  # LMT, what pytz zones report through replace()

    def dst(self, moment: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, moment: dt.datetime | None) -> str:
        return "LMT"


def test_pytz_zones_are_replaced_by_zoneinfo() -> None:
    schedule = build_schedule(schedule="0 9 * * *", timezone=FakePytzZone())
    assert schedule.zone == zoneinfo.ZoneInfo("America/New_York")
    assert schedule.first_run(utc(2026, 6, 1)) == utc(2026, 6, 1, 13)


def test_cron_input_in_any_zone() -> None:
    schedule = build_schedule(schedule="0 * * * *")
    local = dt.datetime(2026, 1, 1, 10, 30, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert schedule.next_after(local) == utc(2026, 1, 1, 2)


def test_naive_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_schedule(schedule="* * * * *").next_after(dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        build_schedule(interval=5).first_run(dt.datetime(2026, 1, 1))


def test_interval_schedule() -> None:
    schedule = build_schedule(interval=dt.timedelta(minutes=10))
    now = utc(2026, 1, 1, 12, 0, 0, 500)
    assert schedule.first_run(now) == utc(2026, 1, 1, 12, 10, 0, 500)
    assert schedule.next_after(utc(2026, 1, 1, 12, 10)) == utc(2026, 1, 1, 12, 20)
    assert schedule.next_runs(2, now) == [utc(2026, 1, 1, 12, 10, 0, 500), utc(2026, 1, 1, 12, 20, 0, 500)]
    assert schedule.describe() == "every 10m"


def test_once_schedule() -> None:
    at = utc(2026, 1, 1, 12)
    schedule = build_schedule(execute_at=at)
    assert schedule.first_run(utc(2027, 1, 1)) == at  # even in the past
    assert schedule.next_after(at) is None
    assert schedule.next_runs(5, utc(2025, 1, 1)) == [at]
    assert schedule.next_runs(5, at) == []
    assert "2026-01-01T12:00:00+00:00" in schedule.describe()


def test_schedules_are_hashable_values() -> None:
    a = build_schedule(schedule="0 9 * * *", timezone="Europe/Dublin", dst_fold="last")
    b = CronSchedule("0 9 * * *", "Europe/Dublin", dst_fold=DstFold.LAST)
    assert a == b
    assert hash(a) == hash(b)
    assert a != CronSchedule("0 9 * * *", "Europe/Dublin")
    with pytest.raises(AttributeError):
        a.expression = "x"  # type: ignore[misc]


def test_describe() -> None:
    assert build_schedule(schedule="*/5 * * * *").describe() == "cron '*/5 * * * *' in UTC"
    text = build_schedule(schedule="0 2 * * *", timezone="America/New_York", jitter=60, jitter_key="x").describe()
    assert text.startswith("cron '0 2 * * *' in America/New_York, dst gap transition, fold first, jitter ")


def test_next_runs_from_a_stored_slot() -> None:
    interval = build_schedule(interval=dt.timedelta(minutes=10))
    stored = utc(2026, 1, 1, 12, 3)
    # ahead of `after`: the stored slot comes first
    assert interval.next_runs(2, utc(2026, 1, 1, 12), next_slot=stored) == [stored, utc(2026, 1, 1, 12, 13)]
    # overdue: the preview keeps the instance's own grid
    assert interval.next_runs(2, utc(2026, 1, 2), next_slot=stored) == [utc(2026, 1, 2, 0, 3), utc(2026, 1, 2, 0, 13)]
    # without a stored slot, as if registered at `after`
    assert interval.next_runs(1, utc(2026, 1, 2)) == [utc(2026, 1, 2, 0, 10)]
    cron = build_schedule(schedule="0 * * * *")
    assert cron.next_runs(2, utc(2026, 1, 1, 12, 30), next_slot=utc(2026, 1, 1, 12)) == [utc(2026, 1, 1, 13), utc(2026, 1, 1, 14)]
    assert cron.next_runs(1, utc(2026, 1, 1, 11), next_slot=utc(2026, 1, 1, 12, 30)) == [utc(2026, 1, 1, 12, 30)]
    once = build_schedule(execute_at=utc(2026, 1, 1, 12))
    assert once.next_runs(3, utc(2026, 1, 1), next_slot=utc(2026, 1, 1, 13)) == [utc(2026, 1, 1, 13)]


def test_next_runs_counts() -> None:
    schedule = build_schedule(schedule="0 * * * *")
    assert schedule.next_runs(0, utc(2026, 1, 1)) == []
    assert len(schedule.next_runs(25, utc(2026, 1, 1))) == 25
    assert schedule.next_runs(1, utc(2026, 1, 1)) == [utc(2026, 1, 1, 1)]


# ---------------------------------------------------------------------------------------------
# Jitter
# ---------------------------------------------------------------------------------------------


def test_jitter_offset_is_stable_and_in_range() -> None:
    window = dt.timedelta(minutes=10)
    # Pinned: the offset must never change between releases, machines or processes.
    assert jitter_offset("reminders:user-42", window) == jitter_offset("reminders:user-42", window)
    assert jitter_offset("reminders:user-42", window) == dt.timedelta(microseconds=PINNED_USER_42)
    offsets = {jitter_offset(f"user-{i}", window) for i in range(1000)}
    assert all(dt.timedelta(0) <= o < window for o in offsets)
    assert len(offsets) > 990
    assert jitter_offset("x", None) == dt.timedelta(0)
    assert jitter_offset("x", dt.timedelta(0)) == dt.timedelta(0)


PINNED_USER_42 = 68_702_467  # BLAKE2b of the key; a change here breaks every deployed spread


def test_cron_jitter_shifts_the_whole_sequence() -> None:
    plain = build_schedule(schedule="0 0 * * *")
    jittered = build_schedule(schedule="0 0 * * *", jitter=dt.timedelta(hours=1), jitter_key="reminders:user-42")
    assert isinstance(jittered, CronSchedule)
    offset = jittered.offset
    assert dt.timedelta(0) < offset < dt.timedelta(hours=1)
    start = utc(2026, 1, 1, 0, 0, 1)
    assert take(jittered, start, 5) == [slot + offset for slot in take(plain, start - offset, 5)]
    assert take(jittered, start, 1) == [utc(2026, 1, 1) + offset]
    # a jittered slot that is due: the next one is a day later, never the same slot again
    first = take(jittered, start, 1)[0]
    assert jittered.next_after(first) == first + dt.timedelta(days=1)
    # registered between the plain slot and its jittered one: the jittered one is still ahead
    assert jittered.first_run(utc(2026, 1, 2) + offset / 2) == utc(2026, 1, 2) + offset


def test_interval_jitter() -> None:
    schedule = build_schedule(interval=60, jitter=30, jitter_key="k")
    assert isinstance(schedule, IntervalSchedule)
    first = schedule.first_run(utc(2026, 1, 1))
    assert first == utc(2026, 1, 1, 0, 1) + schedule.offset
    assert schedule.next_after(first) == first + dt.timedelta(minutes=1)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
@pytest.mark.parametrize("expression", ["0 0 1 1 *", "* * * * *", "0 0 L * *"])
def test_edges_of_the_datetime_range_never_raise(zone: str, expression: str) -> None:
    schedule = build_schedule(schedule=expression, timezone=zone)
    for moment in (dt.datetime.max.replace(tzinfo=UTC), utc(9999, 12, 31, 23, 58), dt.datetime.min.replace(tzinfo=UTC)):
        slot = schedule.next_after(moment)
        assert slot is None or slot > moment
    if expression == "0 0 1 1 *":  # 1 January 10000 does not exist: the schedule is over
        assert schedule.next_after(utc(9999, 6, 1)) is None
