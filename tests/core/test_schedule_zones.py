"""The time-zone facts the cron walk relies on, checked against the installed tz database."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest

from pyncette.schedule import _PROBE_STEP, _TRANSITION_REACH, _Transitions

UTC = dt.timezone.utc


def test_no_zone_changes_offset_twice_within_two_days() -> None:
    """Offsets are probed once a day: a change and its reversal must never fit between two probes.

    The tz database's transition table is read through the pure-Python zoneinfo implementation,
    which exposes it (private attributes, test-only); the POSIX rule that continues each table
    yields transitions months apart.
    """
    pure = pytest.importorskip("zoneinfo._zoneinfo")
    shortest = dt.timedelta.max
    biggest_jump = dt.timedelta(0)
    for key in sorted(zoneinfo.available_timezones()):
        zone = pure.ZoneInfo.no_cache(key)
        offset = zone._tti_before.utcoff if zone._tti_before else None
        changes = []
        for moment, info in zip(zone._trans_utc, zone._ttinfos, strict=True):
            if info.utcoff != offset:
                if offset is not None:
                    biggest_jump = max(biggest_jump, abs(info.utcoff - offset))
                changes.append(moment)
                offset = info.utcoff
        for earlier, later in itertools.pairwise(changes):
            shortest = min(shortest, dt.timedelta(seconds=later - earlier))
    assert shortest > 2 * _PROBE_STEP, shortest
    assert biggest_jump <= _TRANSITION_REACH / 2, biggest_jump


def hourly_changes(zone: zoneinfo.ZoneInfo, year: int) -> int:
    moment = dt.datetime(year, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(zone).utcoffset()
    count = 0
    while moment.year == year:
        moment += dt.timedelta(hours=1)
        current = moment.astimezone(zone).utcoffset()
        count += current != previous
        previous = current
    return count


@pytest.mark.parametrize(
    ("name", "year"),
    [
        ("Europe/Dublin", 1971),
        ("Europe/Dublin", 2026),
        ("America/New_York", 2007),
        ("America/New_York", 2099),
        ("Australia/Lord_Howe", 2026),
        ("Pacific/Apia", 2011),
        ("Pacific/Kiritimati", 1994),
        ("Africa/Casablanca", 2030),
        ("Asia/Kolkata", 1945),
        ("Antarctica/Troll", 2026),  # +00 <-> +02: a two-hour DST
        ("America/Sitka", 1867),  # the Alaska purchase: a fold of almost a day
        ("UTC", 2026),
    ],
)
def test_transitions_are_found_to_the_second(name: str, year: int) -> None:
    zone = zoneinfo.ZoneInfo(name)
    transitions = _Transitions(zone)
    found = transitions._year(year)[1]
    assert len(found) == hourly_changes(zone, year)
    for change in found:
        assert (change.at - dt.timedelta(seconds=1)).astimezone(zone).utcoffset() == change.before
        assert change.at.astimezone(zone).utcoffset() == change.after
        assert change.before != change.after
    if found:
        lo = dt.datetime(year, 1, 1, tzinfo=UTC)
        hi = dt.datetime(year + 1, 1, 1, tzinfo=UTC)
        assert transitions.first_in(lo, hi) == found[0]
        assert transitions.last_in(lo, hi) == found[-1]
        assert transitions.first_in(found[0].at, hi) == (found[1] if len(found) > 1 else None)
        assert transitions.last_in(lo, found[-1].at - dt.timedelta(seconds=1)) == (found[-2] if len(found) > 1 else None)


def test_fixed_offsets_have_no_transitions() -> None:
    transitions = _Transitions(dt.timezone(dt.timedelta(hours=5, minutes=45)))
    assert transitions.first_in(dt.datetime(1900, 1, 1, tzinfo=UTC), dt.datetime(2100, 1, 1, tzinfo=UTC)) is None
    assert transitions.last_in(dt.datetime(1900, 1, 1, tzinfo=UTC), dt.datetime(2100, 1, 1, tzinfo=UTC)) is None
