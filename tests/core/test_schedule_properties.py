"""Property tests: ordering, consistency and jitter invariants over random zones, times and policies."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyncette.model import CatchUp, DstFold, DstGap
from pyncette.schedule import CronSchedule, IntervalSchedule, Schedule, jitter_offset, resolve_misfire

UTC = dt.timezone.utc
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Antarctica/Troll",
]
EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0 0 * * *",
    "5 1,2,3 * * *",
    "*/10 0-3 * * 0",
    "0 12 L * *",
    "0 0 29 2 *",
    "* * * * * */20",
    "59 23 * * *",
    "0 2 * 3,10 0",
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

anywhere = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2045, 1, 1), timezones=st.just(UTC))


def _changes(name: str) -> list[dt.datetime]:
    zone = zoneinfo.ZoneInfo(name)
    out = [dt.datetime(2026, 1, 1, tzinfo=UTC)]
    for year in (2011, 2022, 2026, 2037):
        moment = dt.datetime(year, 1, 1, tzinfo=UTC)
        previous = moment.astimezone(zone).utcoffset()
        while moment.year == year:
            moment += dt.timedelta(hours=6)
            if moment.astimezone(zone).utcoffset() != previous:
                out.append(moment)
                previous = moment.astimezone(zone).utcoffset()
    return out


CHANGES = {name: _changes(name) for name in ZONES}


def _zone_and_instant(name: str) -> st.SearchStrategy[tuple[str, dt.datetime]]:
    # Most of the interest lies within a day or so of one of the zone's offset changes.
    near = st.builds(
        lambda change, seconds: change + dt.timedelta(seconds=seconds),
        st.sampled_from(CHANGES[name]),
        st.integers(min_value=-36 * 3600, max_value=24 * 3600),
    )
    return st.tuples(st.just(name), st.one_of(anywhere, near, near))


zone_and_instant = st.sampled_from(ZONES).flatmap(_zone_and_instant)
gaps = st.sampled_from([None, *DstGap])
folds = st.sampled_from([None, *DstFold])


def is_valid_slot(schedule: CronSchedule, slot: dt.datetime) -> bool:
    """The slot's wall time matches, or it is a matching non-existent wall time shifted by its gap
    (SHIFT) or moved to the gap's end (TRANSITION)."""
    zone = schedule.zone
    wall = slot.astimezone(zone).replace(tzinfo=None)
    if croniter.match(schedule.expression, wall):
        return True
    if schedule.gap_policy is DstGap.TRANSITION:
        second_before = (slot - dt.timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
        if wall - second_before == dt.timedelta(seconds=1):
            return False  # no gap ends at the slot
        # the wall times [second_before + 1s, wall) do not exist: one of them must match
        return bool(croniter(schedule.expression, second_before).get_next(dt.datetime) < wall)
    if schedule.gap_policy is not DstGap.SHIFT:
        return False
    for back in range(1, 24 * 60 + 1):  # the wall time that was shifted here lies up to a day earlier
        candidate = wall - dt.timedelta(minutes=back)
        aware = candidate.replace(tzinfo=zone, fold=0)
        exists = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == candidate
        if not exists and aware.astimezone(UTC) == slot and croniter.match(schedule.expression, candidate):
            return True
    return False


@SETTINGS
@given(where=zone_and_instant, expression=st.sampled_from(EXPRESSIONS), gap=gaps, fold=folds)
def test_slots_strictly_increase_and_are_valid(
    where: tuple[str, dt.datetime], expression: str, gap: DstGap | None, fold: DstFold | None
) -> None:
    zone, start = where
    schedule = CronSchedule(expression, zone, dst_gap=gap, dst_fold=fold)
    previous = start
    for _ in range(6):
        slot = schedule.next_after(previous)
        assert slot is not None
        assert slot > previous
        assert slot.tzinfo is UTC
        assert is_valid_slot(schedule, slot), (slot, slot.astimezone(schedule.zone))
        previous = slot


@SETTINGS
@given(
    where=zone_and_instant,
    expression=st.sampled_from(EXPRESSIONS),
    gap=gaps,
    fold=folds,
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_next_after_any_instant_is_the_next_slot(
    where: tuple[str, dt.datetime], expression: str, gap: DstGap | None, fold: DstFold | None, fraction: float
) -> None:
    """For x between two consecutive slots, next_after(x) is the later one: nothing hides in between."""
    zone, start = where
    schedule = CronSchedule(expression, zone, dst_gap=gap, dst_fold=fold)
    first = schedule.next_after(start)
    assert first is not None
    second = schedule.next_after(first)
    assert second is not None
    between = first + min((second - first) * fraction, second - first - dt.timedelta(microseconds=1))
    assert schedule.next_after(between) == second
    assert schedule.next_after(first - dt.timedelta(microseconds=1)) == first


@SETTINGS
@given(key=st.text(max_size=40), seconds=st.integers(min_value=1, max_value=10**7))
def test_jitter_offset_in_range_and_stable(key: str, seconds: int) -> None:
    window = dt.timedelta(seconds=seconds)
    offset = jitter_offset(key, window)
    assert dt.timedelta(0) <= offset < window
    assert offset == jitter_offset(key, window)


@SETTINGS
@given(where=zone_and_instant, key=st.text(max_size=20))
def test_jittered_sequence_is_the_plain_one_shifted(where: tuple[str, dt.datetime], key: str) -> None:
    zone, start = where
    plain = CronSchedule("*/30 * * * *", zone, dst_fold=DstFold.BOTH)
    jittered = CronSchedule("*/30 * * * *", zone, dst_fold=DstFold.BOTH, jitter=dt.timedelta(minutes=10), jitter_key=key)
    offset = jittered.offset
    got = jittered.next_after(start)
    base = plain.next_after(start - offset)
    for _ in range(4):
        assert got is not None
        assert base is not None
        assert got == base + offset
        got, base = jittered.next_after(got), plain.next_after(base)


def brute_force(schedule: Schedule, slot: dt.datetime, now: dt.datetime, grace: dt.timedelta) -> list[dt.datetime]:
    due: list[dt.datetime] = []
    current: dt.datetime | None = slot
    while current is not None and current <= now:
        due.append(current)
        current = schedule.next_after(current)
    return due


@SETTINGS
@given(
    minutes=st.integers(min_value=1, max_value=180),
    behind=st.integers(min_value=0, max_value=2000),
    grace=st.integers(min_value=0, max_value=300),
    catch_up=st.sampled_from(list(CatchUp)),
    cron=st.booleans(),
)
def test_misfire_counts_are_consistent(minutes: int, behind: int, grace: int, catch_up: CatchUp, cron: bool) -> None:
    slot = dt.datetime(2026, 3, 1, tzinfo=UTC)
    schedule: Schedule
    if cron and 60 % minutes == 0:
        schedule = CronSchedule(f"*/{minutes} * * * *", "Europe/Dublin")
    else:
        schedule = IntervalSchedule(dt.timedelta(minutes=minutes))
    now = slot + dt.timedelta(minutes=behind, seconds=7)
    grace_delta = dt.timedelta(minutes=grace)
    result = resolve_misfire(schedule, slot, now, catch_up, grace_delta)
    due = brute_force(schedule, slot, now, grace_delta)
    late = [s for s in due if now - s > grace_delta]
    assert result.late == (now - slot > grace_delta)
    if not result.late or catch_up is CatchUp.ALL:
        assert (result.run, result.missed, result.coalesced) == (slot, 0, 0)
        assert result.next_slot == schedule.next_after(slot)
    elif catch_up is CatchUp.LATEST:
        assert result.run == due[-1]
        assert result.coalesced == len(due) - 1
        assert result.next_slot == schedule.next_after(due[-1])
        assert result.next_slot is not None
        assert result.next_slot > now
    else:
        kept = [s for s in due if s not in late]
        assert result.missed == len(late)
        assert result.run == (kept[0] if kept else None)
        assert result.next_slot == (schedule.next_after(kept[0]) if kept else schedule.next_after(due[-1]))
