"""Cron schedules across real daylight-saving transitions.

Worked examples pin the documented rules (docs/schedules.md); an independent brute-force oracle
then checks every policy against minute-by-minute enumeration around real transitions.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Iterator

import pytest
from croniter import croniter

from pyncette.model import DstFold, DstGap
from pyncette.schedule import CronSchedule, build_schedule

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_runs(schedule: CronSchedule, start: dt.datetime, n: int) -> list[str]:
    """Upcoming slots as 'wall time+offset' strings, checked against UTC output on the way."""
    out: list[str] = []
    slot = schedule.first_run(start)
    while slot is not None and len(out) < n:
        assert slot.tzinfo is UTC
        out.append(slot.astimezone(schedule.zone).strftime("%m-%d %H:%M%z"))
        slot = schedule.next_after(slot)
    assert out == [run.strftime("%m-%d %H:%M%z") for run in schedule.next_runs(n, start)]
    return out


# ---------------------------------------------------------------------------------------------
# Defaults (classic Vixie cron)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "gap", "fold"),
    [
        ("30 2 * * *", DstGap.TRANSITION, DstFold.FIRST),
        ("0 0 1 * *", DstGap.TRANSITION, DstFold.FIRST),
        ("0 1,13 * * *", DstGap.TRANSITION, DstFold.FIRST),
        ("0 0-23 * * *", DstGap.TRANSITION, DstFold.FIRST),  # a list, not a wildcard
        ("*/15 2 * * *", DstGap.TRANSITION, DstFold.FIRST),  # only the hour field counts
        ("@daily", DstGap.TRANSITION, DstFold.FIRST),
        ("*/15 * * * *", DstGap.SKIP, DstFold.BOTH),
        ("0 * * * *", DstGap.SKIP, DstFold.BOTH),
        ("0 */2 * * *", DstGap.SKIP, DstFold.BOTH),
        ("0 1-5/2 * * *", DstGap.SKIP, DstFold.BOTH),
        ("@hourly", DstGap.SKIP, DstFold.BOTH),
        ("* * * * * */10", DstGap.SKIP, DstFold.BOTH),
    ],
)
def test_default_policies_follow_vixie(expression: str, gap: DstGap, fold: DstFold) -> None:
    schedule = CronSchedule(expression, "Europe/Dublin")
    assert (schedule.gap_policy, schedule.fold_policy) == (gap, fold)
    explicit = CronSchedule(expression, "Europe/Dublin", dst_gap=DstGap.SKIP, dst_fold=DstFold.LAST)
    assert (explicit.gap_policy, explicit.fold_policy) == (DstGap.SKIP, DstFold.LAST)


# ---------------------------------------------------------------------------------------------
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01 02:00 EDT -> 01:00 EST
# ---------------------------------------------------------------------------------------------

NY_SPRING = utc(2026, 3, 7)
NY_FALL = utc(2026, 10, 31)


@pytest.mark.parametrize(
    ("expression", "kwargs", "start", "expected"),
    [
        # the default runs the missing 02:30 when the gap ends, as Vixie cron does
        ("30 2 * * *", {}, NY_SPRING, ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"]),
        ("30 2 * * *", {"dst_gap": DstGap.SHIFT}, NY_SPRING, ["03-07 02:30-0500", "03-08 03:30-0400", "03-09 02:30-0400"]),
        ("30 2 * * *", {"dst_gap": DstGap.SKIP}, NY_SPRING, ["03-07 02:30-0500", "03-09 02:30-0400"]),
        ("0 2 * * *", {}, NY_SPRING, ["03-07 02:00-0500", "03-08 03:00-0400", "03-09 02:00-0400"]),
        # both matches of the gap run once, at its end
        (
            "0,30 2 * * *",
            {},
            NY_SPRING,
            ["03-07 02:00-0500", "03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:00-0400"],
        ),
        # the missing 02:00 lands on the job's own 03:00: one run, not two
        (
            "0 2,3 * * *",
            {},
            NY_SPRING,
            ["03-07 02:00-0500", "03-07 03:00-0500", "03-08 03:00-0400", "03-09 02:00-0400"],
        ),
        # the missing 02:30 runs at 03:00, before the job's own 03:30
        (
            "30 2,3 * * *",
            {},
            NY_SPRING,
            ["03-07 02:30-0500", "03-07 03:30-0500", "03-08 03:00-0400", "03-08 03:30-0400", "03-09 02:30-0400"],
        ),
        # the shifted 02:30 lands on the job's own 03:30: one run, not two
        (
            "30 2,3 * * *",
            {"dst_gap": DstGap.SHIFT},
            NY_SPRING,
            ["03-07 02:30-0500", "03-07 03:30-0500", "03-08 03:30-0400", "03-09 02:30-0400"],
        ),
        (
            "0,30 2 * * *",
            {"dst_gap": DstGap.SHIFT},
            NY_SPRING,
            ["03-07 02:00-0500", "03-07 02:30-0500", "03-08 03:00-0400", "03-08 03:30-0400", "03-09 02:00-0400"],
        ),
        ("0 */2 * * *", {}, utc(2026, 3, 8, 4, 59), ["03-08 00:00-0500", "03-08 04:00-0400"]),
        (
            "0 */2 * * *",
            {"dst_gap": DstGap.SHIFT},
            utc(2026, 3, 8, 4, 59),
            ["03-08 00:00-0500", "03-08 03:00-0400", "03-08 04:00-0400"],
        ),
        (
            "*/30 * * * *",
            {},
            utc(2026, 3, 8, 5, 59),
            ["03-08 01:00-0500", "03-08 01:30-0500", "03-08 03:00-0400", "03-08 03:30-0400"],
        ),
        (
            "*/30 * * * *",
            {"dst_gap": DstGap.SHIFT},
            utc(2026, 3, 8, 5, 59),
            ["03-08 01:00-0500", "03-08 01:30-0500", "03-08 03:00-0400"],
        ),
    ],
)
def test_new_york_spring_forward(expression: str, kwargs: dict[str, object], start: dt.datetime, expected: list[str]) -> None:
    schedule = CronSchedule(expression, "America/New_York", **kwargs)  # type: ignore[arg-type]
    assert local_runs(schedule, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "kwargs", "start", "expected"),
    [
        ("30 1 * * *", {}, NY_FALL, ["10-31 01:30-0400", "11-01 01:30-0400", "11-02 01:30-0500"]),
        (
            "30 1 * * *",
            {"dst_fold": DstFold.LAST},
            NY_FALL,
            ["10-31 01:30-0400", "11-01 01:30-0500", "11-02 01:30-0500"],
        ),
        (
            "30 1 * * *",
            {"dst_fold": DstFold.BOTH},
            NY_FALL,
            ["10-31 01:30-0400", "11-01 01:30-0400", "11-01 01:30-0500", "11-02 01:30-0500"],
        ),
        ("0 2 * * *", {}, NY_FALL, ["10-31 02:00-0400", "11-01 02:00-0500", "11-02 02:00-0500"]),
        ("0 1 * * *", {}, NY_FALL, ["10-31 01:00-0400", "11-01 01:00-0400", "11-02 01:00-0500"]),
        (
            "*/20 1 * * *",
            {},
            utc(2026, 11, 1, 4),
            ["11-01 01:00-0400", "11-01 01:20-0400", "11-01 01:40-0400", "11-02 01:00-0500"],
        ),
        (
            "*/20 1 * * *",
            {"dst_fold": DstFold.LAST},
            utc(2026, 10, 31, 5, 30),
            ["10-31 01:40-0400", "11-01 01:00-0500", "11-01 01:20-0500", "11-01 01:40-0500", "11-02 01:00-0500"],
        ),
    ],
)
def test_new_york_fall_back_fixed_time(
    expression: str, kwargs: dict[str, object], start: dt.datetime, expected: list[str]
) -> None:
    schedule = CronSchedule(expression, "America/New_York", **kwargs)  # type: ignore[arg-type]
    assert local_runs(schedule, start, len(expected)) == expected


def test_new_york_fall_back_wildcard_runs_in_both_occurrences() -> None:
    schedule = CronSchedule("*/30 * * * *", "America/New_York")
    assert local_runs(schedule, utc(2026, 11, 1, 4, 1), 6) == [
        "11-01 00:30-0400",
        "11-01 01:00-0400",
        "11-01 01:30-0400",
        "11-01 01:00-0500",
        "11-01 01:30-0500",
        "11-01 02:00-0500",
    ]
    first_only = CronSchedule("*/30 * * * *", "America/New_York", dst_fold=DstFold.FIRST)
    assert local_runs(first_only, utc(2026, 11, 1, 4, 1), 4) == [
        "11-01 00:30-0400",
        "11-01 01:00-0400",
        "11-01 01:30-0400",
        "11-01 02:00-0500",
    ]


def test_seconds_field_through_fold_does_not_step_every_second() -> None:
    """A dense expression under FIRST jumps over the repeated hour instead of walking it."""
    schedule = CronSchedule("* 1 * * * *", "America/New_York")  # every second of 01:xx
    assert schedule.fold_policy is DstFold.FIRST
    last_first = utc(2026, 11, 1, 5, 59) + dt.timedelta(seconds=59)
    assert schedule.next_after(last_first) == utc(2026, 11, 2, 6)
    last = CronSchedule("* 1 * * * *", "America/New_York", dst_fold=DstFold.LAST)
    assert last.next_after(utc(2026, 11, 1, 4, 59)) == utc(2026, 11, 1, 6)


# ---------------------------------------------------------------------------------------------
# Europe/Dublin: IST (+1) is "standard" time and winter GMT is negative DST in the tz database.
# 2026-03-29 01:00 GMT -> 02:00 IST, 2026-10-25 02:00 IST -> 01:00 GMT
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "kwargs", "start", "expected"),
    [
        ("30 1 * * *", {}, utc(2026, 3, 28), ["03-28 01:30+0000", "03-29 02:00+0100", "03-30 01:30+0100"]),
        (
            "30 1 * * *",
            {"dst_gap": DstGap.SHIFT},
            utc(2026, 3, 28),
            ["03-28 01:30+0000", "03-29 02:30+0100", "03-30 01:30+0100"],
        ),
        ("30 1 * * *", {"dst_gap": DstGap.SKIP}, utc(2026, 3, 28), ["03-28 01:30+0000", "03-30 01:30+0100"]),
        ("30 1 * * *", {}, utc(2026, 10, 24), ["10-24 01:30+0100", "10-25 01:30+0100", "10-26 01:30+0000"]),
        (
            "30 1 * * *",
            {"dst_fold": DstFold.LAST},
            utc(2026, 10, 24),
            ["10-24 01:30+0100", "10-25 01:30+0000", "10-26 01:30+0000"],
        ),
        (
            "0 * * * *",
            {},
            utc(2026, 10, 24, 23, 30),
            ["10-25 01:00+0100", "10-25 01:00+0000", "10-25 02:00+0000"],
        ),
        ("0 * * * *", {}, utc(2026, 3, 28, 23, 30), ["03-29 00:00+0000", "03-29 02:00+0100"]),
    ],
)
def test_dublin_negative_dst(expression: str, kwargs: dict[str, object], start: dt.datetime, expected: list[str]) -> None:
    schedule = CronSchedule(expression, "Europe/Dublin", **kwargs)  # type: ignore[arg-type]
    assert local_runs(schedule, start, len(expected)) == expected


def test_dublin_tz_database_really_uses_negative_dst() -> None:
    winter = dt.datetime(2026, 1, 15, tzinfo=zoneinfo.ZoneInfo("Europe/Dublin"))
    summer = dt.datetime(2026, 7, 15, tzinfo=zoneinfo.ZoneInfo("Europe/Dublin"))
    assert winter.utcoffset() == dt.timedelta(0)
    assert summer.utcoffset() == dt.timedelta(hours=1)
    # with the vanguard/main data winter has dst() == -1h; rearguard data flips it; either way we
    # only look at offsets, so the slots above hold for both
    assert winter.dst() in (dt.timedelta(hours=-1), dt.timedelta(0))


# ---------------------------------------------------------------------------------------------
# Australia/Lord_Howe: 30-minute shift. 2026-10-04 02:00 +1030 -> 02:30 +11, 2026-04-05 02:00 +11 -> 01:30 +1030
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "kwargs", "start", "expected"),
    [
        # the missing 02:15 runs when the 30-minute gap ends, at 02:30 +11
        ("15 2 * * *", {}, utc(2026, 10, 2), ["10-03 02:15+1030", "10-04 02:30+1100", "10-05 02:15+1100"]),
        ("15 2 * * *", {"dst_gap": DstGap.SHIFT}, utc(2026, 10, 2), ["10-03 02:15+1030", "10-04 02:45+1100", "10-05 02:15+1100"]),
        # the missing 02:15 and the real 02:30 are one run at the gap's end
        ("15,30 2 * * *", {}, utc(2026, 10, 3), ["10-04 02:30+1100", "10-05 02:15+1100", "10-05 02:30+1100"]),
        # the shifted 02:15 (02:45) comes after the real 02:30: slots stay in time order
        (
            "15,30 2 * * *",
            {"dst_gap": DstGap.SHIFT},
            utc(2026, 10, 3),
            ["10-04 02:30+1100", "10-04 02:45+1100", "10-05 02:15+1100"],
        ),
        ("15,30 2 * * *", {"dst_gap": DstGap.SKIP}, utc(2026, 10, 3), ["10-04 02:30+1100", "10-05 02:15+1100"]),
        ("*/15 * * * *", {}, utc(2026, 10, 3, 15, 10), ["10-04 01:45+1030", "10-04 02:30+1100", "10-04 02:45+1100"]),
        ("45 1 * * *", {}, utc(2026, 4, 3), ["04-04 01:45+1100", "04-05 01:45+1100", "04-06 01:45+1030"]),
        ("45 1 * * *", {"dst_fold": DstFold.LAST}, utc(2026, 4, 3), ["04-04 01:45+1100", "04-05 01:45+1030"]),
        (
            "*/15 * * * *",
            {},
            utc(2026, 4, 4, 14, 20),
            ["04-05 01:30+1100", "04-05 01:45+1100", "04-05 01:30+1030", "04-05 01:45+1030", "04-05 02:00+1030"],
        ),
    ],
)
def test_lord_howe_half_hour_shift(expression: str, kwargs: dict[str, object], start: dt.datetime, expected: list[str]) -> None:
    schedule = CronSchedule(expression, "Australia/Lord_Howe", **kwargs)  # type: ignore[arg-type]
    assert local_runs(schedule, start, len(expected)) == expected


# ---------------------------------------------------------------------------------------------
# Southern hemisphere
# ---------------------------------------------------------------------------------------------


def test_sydney_spring_forward_in_october() -> None:
    # 2026-10-04 02:00 AEST -> 03:00 AEDT
    schedule = build_schedule(schedule="30 2 * * *", timezone="Australia/Sydney")
    assert isinstance(schedule, CronSchedule)
    assert local_runs(schedule, utc(2026, 10, 2), 3) == ["10-03 02:30+1000", "10-04 03:00+1100", "10-05 02:30+1100"]
    shifting = build_schedule(schedule="30 2 * * *", timezone="Australia/Sydney", dst_gap="shift")
    assert isinstance(shifting, CronSchedule)
    assert local_runs(shifting, utc(2026, 10, 2), 3) == ["10-03 02:30+1000", "10-04 03:30+1100", "10-05 02:30+1100"]


def test_sydney_fall_back_in_april() -> None:
    # 2026-04-05 03:00 AEDT -> 02:00 AEST
    schedule = build_schedule(schedule="30 2 * * *", timezone="Australia/Sydney", dst_fold="both")
    assert isinstance(schedule, CronSchedule)
    assert local_runs(schedule, utc(2026, 4, 3), 4) == [
        "04-04 02:30+1100",
        "04-05 02:30+1100",
        "04-05 02:30+1000",
        "04-06 02:30+1000",
    ]


def test_santiago_midnight_does_not_exist() -> None:
    # Chile springs forward at 24:00: 2026-09-06 00:00 -04 -> 01:00 -03
    daily = CronSchedule("0 0 * * *", "America/Santiago")
    assert local_runs(daily, utc(2026, 9, 4, 5), 3) == ["09-05 00:00-0400", "09-06 01:00-0300", "09-07 00:00-0300"]
    skipping = CronSchedule("0 0 * * *", "America/Santiago", dst_gap=DstGap.SKIP)
    assert local_runs(skipping, utc(2026, 9, 4, 5), 2) == ["09-05 00:00-0400", "09-07 00:00-0300"]


def test_santiago_fall_back_repeats_the_last_hour_of_the_day() -> None:
    # 2026-04-05 00:00 -03 -> 2026-04-04 23:00 -04
    schedule = CronSchedule("30 23 * * *", "America/Santiago", dst_fold=DstFold.BOTH)
    assert local_runs(schedule, utc(2026, 4, 3, 3), 4) == [
        "04-03 23:30-0300",
        "04-04 23:30-0300",
        "04-04 23:30-0400",
        "04-05 23:30-0400",
    ]


def test_apia_skipped_a_whole_day() -> None:
    # Samoa jumped from 2011-12-29 23:59:59 -10 to 2011-12-31 00:00 +14.
    # the missing 30 December noon runs when the gap ends, at midnight starting the 31st
    noon = CronSchedule("0 12 * * *", "Pacific/Apia")
    assert local_runs(noon, utc(2011, 12, 28, 12), 4) == [
        "12-28 12:00-1000",
        "12-29 12:00-1000",
        "12-31 00:00+1400",
        "12-31 12:00+1400",
    ]
    # shifted by the 24-hour gap, it lands on the 31st's own noon: one run
    shifted_noon = CronSchedule("0 12 * * *", "Pacific/Apia", dst_gap=DstGap.SHIFT)
    assert local_runs(shifted_noon, utc(2011, 12, 28, 12), 3) == ["12-28 12:00-1000", "12-29 12:00-1000", "12-31 12:00+1400"]
    monthly = CronSchedule("0 9 30 * *", "Pacific/Apia")  # 30 December 09:00 never happened there
    assert local_runs(monthly, utc(2011, 12, 1), 2) == ["12-31 00:00+1400", "01-30 09:00+1400"]
    shifted_monthly = CronSchedule("0 9 30 * *", "Pacific/Apia", dst_gap=DstGap.SHIFT)
    assert local_runs(shifted_monthly, utc(2011, 12, 1), 2) == ["12-31 09:00+1400", "01-30 09:00+1400"]
    skipping = CronSchedule("0 9 30 * *", "Pacific/Apia", dst_gap=DstGap.SKIP)
    assert local_runs(skipping, utc(2011, 12, 1), 1) == ["01-30 09:00+1400"]


def test_zone_that_abolished_dst_has_no_gap() -> None:
    schedule = CronSchedule("30 2 * * *", "America/Sao_Paulo")  # no DST since 2019
    assert local_runs(schedule, utc(2026, 11, 1), 2) == ["11-01 02:30-0300", "11-02 02:30-0300"]
    historic = CronSchedule("0 0 * * *", "America/Sao_Paulo")  # 2018-11-04 00:00 -03 -> 01:00 -02
    assert local_runs(historic, utc(2018, 11, 3, 4), 2) == ["11-04 01:00-0200", "11-05 00:00-0200"]


# ---------------------------------------------------------------------------------------------
# Brute-force oracle
# ---------------------------------------------------------------------------------------------


def offset_changes(zone: zoneinfo.ZoneInfo, year: int) -> list[dt.datetime]:
    """UTC hours at which the zone's offset differs from the hour before (independent of the code)."""
    out = []
    moment = utc(year, 1, 1)
    previous = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        moment += dt.timedelta(hours=1)
        current = moment.astimezone(zone).utcoffset()
        if current != previous:
            out.append(moment)
        previous = current
    return out


def matching_walls(expression: str, lo: dt.datetime, hi: dt.datetime) -> set[dt.datetime]:
    it = croniter(expression, lo - dt.timedelta(seconds=1), ret_type=dt.datetime)
    out = set()
    wall = it.get_next()
    while wall <= hi:
        out.add(wall)
        wall = it.get_next()
    return out


def oracle(
    expression: str, zone: zoneinfo.ZoneInfo, gap: DstGap, fold: DstFold, lo: dt.datetime, hi: dt.datetime
) -> list[dt.datetime]:
    """Every slot in [lo, hi] by the definition in docs/schedules.md, minute by minute."""
    walls = matching_walls(expression, _naive_wall(lo, zone) - dt.timedelta(days=2), _naive_wall(hi, zone) + dt.timedelta(days=2))
    slots = set()
    moment = lo
    while moment <= hi:
        wall = _naive_wall(moment, zone)
        if wall in walls:
            first = wall.replace(tzinfo=zone, fold=0).utcoffset()
            second = wall.replace(tzinfo=zone, fold=1).utcoffset()
            assert first is not None
            assert second is not None
            is_first = moment == (wall - max(first, second)).replace(tzinfo=UTC)
            if first == second or fold is DstFold.BOTH or (fold is DstFold.FIRST) == is_first:
                slots.add(moment)
        moment += MINUTE
    for wall in walls:
        aware = wall.replace(tzinfo=zone, fold=0)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:  # exists
            continue
        if gap is DstGap.SHIFT:
            extra = aware.astimezone(UTC)  # PEP 495: read with the offset before the gap
        elif gap is DstGap.TRANSITION:
            # the first minute whose wall time is later than ``wall``; reading ``wall`` with the
            # offset after the gap (PEP 495 fold=1) gives an instant before the gap ends
            extra = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            while _naive_wall(extra, zone) <= wall:
                extra += MINUTE
        else:
            continue
        if lo <= extra <= hi:
            slots.add(extra)
    return sorted(slots)


def _naive_wall(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def walk(schedule: CronSchedule, lo: dt.datetime, hi: dt.datetime) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    slot = schedule.next_after(lo - dt.timedelta(microseconds=1))
    while slot is not None and slot <= hi:
        assert not out or slot > out[-1]
        out.append(slot)
        slot = schedule.next_after(slot)
    return out


def transition_cases() -> Iterator[tuple[str, dt.datetime]]:
    zones = {
        "America/New_York": [2026],
        "Europe/Dublin": [2026],
        "Australia/Lord_Howe": [2026],
        "Australia/Sydney": [2026],
        "America/Santiago": [2026],
        "America/Havana": [2026],  # changes at 00:00/01:00 local
        "Asia/Tehran": [2022],  # last DST year
        "Africa/Casablanca": [2026],  # Ramadan: DST goes *backwards* for a month
        "Europe/Moscow": [2011, 2014],  # permanent offset changes
        "Pacific/Apia": [2011],  # a 24-hour gap
        "America/St_Johns": [2026],  # -03:30 base
    }
    for name, years in zones.items():
        zone = zoneinfo.ZoneInfo(name)
        for year in years:
            for change in offset_changes(zone, year):
                yield name, change


EXPRESSIONS = [
    "*/15 * * * *",
    "30 2 * * *",
    "0 * * * *",
    "0 */2 * * *",
    "30 1 * * *",
    "0 0 * * *",
    "45 23 * * *",
    "15,45 0-3 * * *",
    "*/7 1,2 * * *",
    "0,30 2 * * *",
    "0 2,3 * * *",
    "0 0 30 * *",
]
POLICIES = [(None, None)] + [(gap, fold) for gap in DstGap for fold in DstFold]
CASES = list(transition_cases())


@pytest.mark.parametrize(("zone_name", "change"), CASES, ids=[f"{z}@{c:%Y-%m-%dT%H}" for z, c in CASES])
def test_matches_brute_force_oracle(zone_name: str, change: dt.datetime) -> None:
    zone = zoneinfo.ZoneInfo(zone_name)
    reach = dt.timedelta(hours=30) if zone_name == "Pacific/Apia" else dt.timedelta(hours=6)
    lo, hi = change - reach, change + reach
    for expression in EXPRESSIONS:
        for gap, fold in POLICIES:
            schedule = CronSchedule(expression, zone, dst_gap=gap, dst_fold=fold)
            expected = oracle(expression, zone, schedule.gap_policy, schedule.fold_policy, lo, hi)
            assert walk(schedule, lo, hi) == expected, (expression, gap, fold)
