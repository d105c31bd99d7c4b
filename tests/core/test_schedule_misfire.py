"""resolve_misfire: what a worker does with a slot it picked up late."""

from __future__ import annotations

import datetime as dt

import pytest

from pyncette.model import CatchUp
from pyncette.schedule import Misfire, build_schedule, resolve_misfire

UTC = dt.timezone.utc
SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)

HOURLY_CRON = build_schedule(schedule="0 * * * *")
HOURLY_INTERVAL = build_schedule(interval=HOUR)


@pytest.mark.parametrize("schedule", [HOURLY_CRON, HOURLY_INTERVAL], ids=["cron", "interval"])
@pytest.mark.parametrize("catch_up", list(CatchUp))
@pytest.mark.parametrize("grace", [None, MINUTE])
def test_on_time_slot_runs_normally(schedule: object, catch_up: CatchUp, grace: dt.timedelta | None) -> None:
    result = resolve_misfire(schedule, T0, T0 + 5 * SECOND, catch_up, grace)  # type: ignore[arg-type]
    assert result == Misfire(run=T0, next_slot=T0 + HOUR)


@pytest.mark.parametrize("schedule", [HOURLY_CRON, HOURLY_INTERVAL], ids=["cron", "interval"])
@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_without_grace_nothing_is_late(schedule: object, catch_up: CatchUp) -> None:
    result = resolve_misfire(schedule, T0, T0 + 50 * HOUR, catch_up, None)  # type: ignore[arg-type]
    assert result == Misfire(run=T0, next_slot=T0 + HOUR)


@pytest.mark.parametrize("schedule", [HOURLY_CRON, HOURLY_INTERVAL], ids=["cron", "interval"])
def test_all_runs_every_missed_slot_in_turn(schedule: object) -> None:
    now = T0 + 3 * HOUR + 10 * MINUTE
    runs = []
    slot: dt.datetime | None = T0
    while slot is not None and slot <= now:
        result = resolve_misfire(schedule, slot, now, CatchUp.ALL, MINUTE)  # type: ignore[arg-type]
        assert result.missed == result.coalesced == 0
        assert result.run is not None
        runs.append(result.run)
        slot = result.next_slot
    assert runs == [T0, T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    assert slot == T0 + 4 * HOUR


@pytest.mark.parametrize("schedule", [HOURLY_CRON, HOURLY_INTERVAL], ids=["cron", "interval"])
@pytest.mark.parametrize(
    ("behind", "run_offset", "coalesced"),
    [
        (3 * HOUR + 10 * MINUTE, 3 * HOUR, 3),
        (3 * HOUR, 3 * HOUR, 3),  # a slot exactly at now is folded in
        (59 * MINUTE, dt.timedelta(0), 0),  # late, but nothing else is due
        (1000 * HOUR + SECOND, 1000 * HOUR, 1000),
    ],
)
def test_latest_runs_once_for_all_due_slots(
    schedule: object, behind: dt.timedelta, run_offset: dt.timedelta, coalesced: int
) -> None:
    result = resolve_misfire(schedule, T0, T0 + behind, CatchUp.LATEST, MINUTE)  # type: ignore[arg-type]
    assert result == Misfire(run=T0 + run_offset, next_slot=T0 + run_offset + HOUR, coalesced=coalesced, late=True)


@pytest.mark.parametrize("schedule", [HOURLY_CRON, HOURLY_INTERVAL], ids=["cron", "interval"])
@pytest.mark.parametrize(
    ("behind", "grace", "expected"),
    [
        # 12:00, 13:00, 14:00, 15:00 all late; next is 16:00
        (3 * HOUR + 10 * MINUTE, MINUTE, Misfire(run=None, next_slot=T0 + 4 * HOUR, missed=4, late=True)),
        # 15:00 is within the 15-minute grace: it runs, the three before it are dropped
        (
            3 * HOUR + 10 * MINUTE,
            15 * MINUTE,
            Misfire(run=T0 + 3 * HOUR, next_slot=T0 + 4 * HOUR, missed=3, late=True),
        ),
        # exactly at the grace boundary is not late
        (3 * HOUR + 15 * MINUTE, 15 * MINUTE, Misfire(run=T0 + 3 * HOUR, next_slot=T0 + 4 * HOUR, missed=3, late=True)),
        (2 * MINUTE, MINUTE, Misfire(run=None, next_slot=T0 + HOUR, missed=1, late=True)),
        (1000 * HOUR + 2 * MINUTE, MINUTE, Misfire(run=None, next_slot=T0 + 1001 * HOUR, missed=1001, late=True)),
    ],
)
def test_skip_drops_late_slots(schedule: object, behind: dt.timedelta, grace: dt.timedelta, expected: Misfire) -> None:
    assert resolve_misfire(schedule, T0, T0 + behind, CatchUp.SKIP, grace) == expected  # type: ignore[arg-type]


def test_grace_boundary_is_inclusive() -> None:
    assert not resolve_misfire(HOURLY_CRON, T0, T0 + MINUTE, CatchUp.SKIP, MINUTE).late
    assert resolve_misfire(HOURLY_CRON, T0, T0 + MINUTE + dt.timedelta(microseconds=1), CatchUp.SKIP, MINUTE).late


def test_zero_grace_makes_latest_fast_forward() -> None:
    """pyncette 1.x ``fast_forward=True``: LATEST with a zero grace."""
    on_time = resolve_misfire(HOURLY_CRON, T0, T0 + SECOND, CatchUp.LATEST, dt.timedelta(0))
    assert on_time == Misfire(run=T0, next_slot=T0 + HOUR, late=True)
    behind = resolve_misfire(HOURLY_CRON, T0, T0 + 5 * HOUR + SECOND, CatchUp.LATEST, dt.timedelta(0))
    assert behind == Misfire(run=T0 + 5 * HOUR, next_slot=T0 + 6 * HOUR, coalesced=5, late=True)


@pytest.mark.parametrize(
    ("catch_up", "grace", "expected"),
    [
        (CatchUp.ALL, MINUTE, Misfire(run=T0, next_slot=None, late=True)),
        (CatchUp.LATEST, MINUTE, Misfire(run=T0, next_slot=None, late=True)),
        (CatchUp.SKIP, MINUTE, Misfire(run=None, next_slot=None, missed=1, late=True)),
        (CatchUp.SKIP, None, Misfire(run=T0, next_slot=None)),
        (CatchUp.SKIP, 2 * HOUR, Misfire(run=T0, next_slot=None)),
    ],
)
def test_once_off_is_dropped_only_by_skip_past_grace(catch_up: CatchUp, grace: dt.timedelta | None, expected: Misfire) -> None:
    schedule = build_schedule(execute_at=T0)
    assert resolve_misfire(schedule, T0, T0 + HOUR, catch_up, grace) == expected


def test_slot_not_yet_due_runs_as_normal() -> None:
    """The repository decided the slot is due; a worker whose clock lags still runs it."""
    result = resolve_misfire(HOURLY_CRON, T0, T0 - SECOND, CatchUp.SKIP, dt.timedelta(0))
    assert result == Misfire(run=T0, next_slot=T0 + HOUR)


def test_tiny_interval_over_long_outage_is_arithmetic() -> None:
    schedule = build_schedule(interval=dt.timedelta(milliseconds=1))
    now = T0 + dt.timedelta(days=365)
    latest = resolve_misfire(schedule, T0, now, CatchUp.LATEST, SECOND)
    assert latest.coalesced == 365 * 86_400_000
    assert latest.run == now
    assert latest.next_slot == now + dt.timedelta(milliseconds=1)
    skip = resolve_misfire(schedule, T0, now, CatchUp.SKIP, SECOND)
    assert skip.missed == 365 * 86_400_000 - 1000
    assert skip.run == now - SECOND


def test_jittered_interval_keeps_its_grid() -> None:
    schedule = build_schedule(interval=HOUR, jitter=HOUR / 2, jitter_key="k")
    slot = schedule.first_run(T0)
    assert slot is not None
    result = resolve_misfire(schedule, slot, slot + 5 * HOUR + SECOND, CatchUp.LATEST, MINUTE)
    assert result.run == slot + 5 * HOUR
    assert result.next_slot == slot + 6 * HOUR


def test_jittered_cron_keeps_its_grid() -> None:
    schedule = build_schedule(schedule="0 * * * *", jitter=30 * MINUTE, jitter_key="user-7")
    slot = schedule.first_run(T0)
    assert slot is not None
    offset = slot - T0  # 12:00 + offset is still ahead of 12:00
    assert dt.timedelta(0) <= offset < 30 * MINUTE
    latest = resolve_misfire(schedule, slot, slot + 5 * HOUR + SECOND, CatchUp.LATEST, MINUTE)
    assert (latest.run, latest.next_slot, latest.coalesced) == (slot + 5 * HOUR, slot + 6 * HOUR, 5)
    skip = resolve_misfire(schedule, slot, slot + 5 * HOUR + SECOND, CatchUp.SKIP, MINUTE)
    assert (skip.run, skip.next_slot, skip.missed) == (slot + 5 * HOUR, slot + 6 * HOUR, 5)


@pytest.mark.parametrize("catch_up", [CatchUp.LATEST, CatchUp.SKIP])
def test_cron_counts_saturate_at_limit_but_position_is_exact(catch_up: CatchUp) -> None:
    schedule = build_schedule(schedule="* * * * * *")  # every second
    now = T0 + dt.timedelta(days=2, microseconds=500)
    result = resolve_misfire(schedule, T0, now, catch_up, SECOND / 2, limit=100)
    assert result.next_slot == T0 + dt.timedelta(days=2, seconds=1)
    if catch_up is CatchUp.LATEST:
        assert result.run == T0 + dt.timedelta(days=2)
        assert result.coalesced == 100
    else:
        assert result.run == T0 + dt.timedelta(days=2)  # within half a second of now: not late
        assert result.missed == 100


def test_cron_latest_across_dst() -> None:
    schedule = build_schedule(schedule="30 2 * * *", timezone="America/New_York")
    slot = dt.datetime(2026, 3, 6, 7, 30, tzinfo=UTC)  # 02:30 EST on the 6th
    now = dt.datetime(2026, 3, 8, 12, tzinfo=UTC)
    result = resolve_misfire(schedule, slot, now, CatchUp.LATEST, MINUTE)
    assert result.run == dt.datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT, the missing 02:30 at the gap's end
    assert result.next_slot == dt.datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    assert result.coalesced == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grace": -SECOND}, "grace"),
        ({"limit": 0}, "limit"),
        ({"now": dt.datetime(2026, 1, 1)}, "timezone-aware"),
        ({"slot": dt.datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {"slot": T0, "now": T0 + HOUR, "catch_up": CatchUp.SKIP, "grace": MINUTE, **kwargs}
    with pytest.raises(ValueError, match=match):
        resolve_misfire(HOURLY_CRON, **arguments)  # type: ignore[arg-type]
