"""Pure schedule computation: when does a task instance run next.

Nothing here reads a clock or does I/O: every function takes the instants it needs. All instants
that go in or come out are timezone-aware; the scheduler passes and stores UTC. Three kinds of
schedule implement :class:`Schedule`:

- :class:`CronSchedule`: a cron expression evaluated on the wall clock of an IANA time zone, with
  defined behaviour on daylight-saving changes (see :class:`CronSchedule` and ``docs/schedules.md``);
- :class:`IntervalSchedule`: a fixed period in real (UTC) time;
- :class:`OnceSchedule`: a single instant.

:func:`build_schedule` validates user input and builds one of them; :func:`resolve_misfire` decides
what to do with a slot that a worker picks up late.
"""

from __future__ import annotations

import abc
import bisect
import calendar
import datetime
import difflib
import functools
import hashlib
import math
import re
import threading
import zoneinfo
from typing import Any, Iterator

import attrs
from croniter import CroniterBadDateError, CroniterError, croniter

from pyncette.errors import ConfigurationError
from pyncette.model import CatchUp, DstFold, DstGap

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Misfire",
    "OnceSchedule",
    "Schedule",
    "ScheduleError",
    "build_schedule",
    "jitter_offset",
    "resolve_misfire",
]

UTC = datetime.timezone.utc
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)
_NO_OFFSET = datetime.timedelta(0)


class ScheduleError(ConfigurationError):
    """A schedule was defined with a value that cannot work; the message names the value.

    The scheduler wraps it into a :class:`~pyncette.errors.TaskDefinitionError` naming the task.
    """


# --------------------------------------------------------------------------------------------
# Time zone transitions
# --------------------------------------------------------------------------------------------

# Offsets are probed once a day and changes located by bisection. Offset changes in the tz database
# are always more than two days apart (the closest pair is almost four days apart; a test checks
# every installed zone), so one probe step never holds a change and its reversal.
_PROBE_STEP = datetime.timedelta(days=1)
# How far back a transition can still affect the slots after an instant: the longest gap on record
# is a whole day (Pacific/Apia skipped 30 December 2011).
_TRANSITION_REACH = datetime.timedelta(days=2)
_MIN_YEAR = 2
_MAX_YEAR = 9998


@attrs.frozen
class _Transition:
    """The zone's UTC offset changes from ``before`` to ``after`` at the instant ``at`` (UTC)."""

    at: datetime.datetime
    before: datetime.timedelta
    after: datetime.timedelta


class _Transitions:
    """The UTC-offset changes of one zone, computed a calendar year at a time and cached."""

    def __init__(self, tz: datetime.tzinfo) -> None:
        self._tz = tz
        self._fixed = tz.utcoffset(None) is not None
        self._years: dict[int, tuple[list[datetime.datetime], list[_Transition]]] = {}
        self._lock = threading.Lock()

    def offset(self, moment: datetime.datetime) -> datetime.timedelta:
        """The zone's UTC offset at the aware instant ``moment``."""
        return moment.astimezone(self._tz).utcoffset() or _NO_OFFSET

    def _year(self, year: int) -> tuple[list[datetime.datetime], list[_Transition]]:
        """Transitions at instants in ``(1 January year, 1 January year + 1]`` (UTC)."""
        cached = self._years.get(year)
        if cached is not None:
            return cached
        found: list[_Transition] = []
        if not self._fixed and _MIN_YEAR <= year <= _MAX_YEAR:
            end = datetime.datetime(year + 1, 1, 1, tzinfo=UTC)
            left = datetime.datetime(year, 1, 1, tzinfo=UTC)
            left_offset = self.offset(left)
            while left < end:
                right = min(left + _PROBE_STEP, end)
                right_offset = self.offset(right)
                if right_offset == left_offset:
                    left = right
                    continue
                lo, hi = left, right
                while hi - lo > datetime.timedelta(seconds=1):
                    mid = lo + datetime.timedelta(seconds=(hi - lo) // datetime.timedelta(seconds=2))
                    if self.offset(mid) == left_offset:
                        lo = mid
                    else:
                        hi = mid
                hi_offset = self.offset(hi)
                found.append(_Transition(hi, left_offset, hi_offset))
                left, left_offset = hi, hi_offset
        entry = ([t.at for t in found], found)
        with self._lock:
            self._years[year] = entry
        return entry

    def first_in(self, lo: datetime.datetime, hi: datetime.datetime) -> _Transition | None:
        """The earliest transition at an instant in ``(lo, hi]``, if any."""
        if self._fixed:
            return None
        for year in range(max(lo.year, _MIN_YEAR), min(hi.year, _MAX_YEAR) + 1):
            ats, transitions = self._year(year)
            i = bisect.bisect_right(ats, lo)
            if i < len(ats):
                return transitions[i] if ats[i] <= hi else None
        return None

    def last_in(self, lo: datetime.datetime, hi: datetime.datetime) -> _Transition | None:
        """The latest transition at an instant in ``(lo, hi]``, if any."""
        if self._fixed:
            return None
        for year in range(min(hi.year, _MAX_YEAR), max(lo.year, _MIN_YEAR) - 1, -1):
            ats, transitions = self._year(year)
            i = bisect.bisect_right(ats, hi)
            if i > 0:
                return transitions[i - 1] if ats[i - 1] > lo else None
        return None


_TRANSITIONS: dict[datetime.tzinfo, _Transitions] = {}
_TRANSITIONS_LOCK = threading.Lock()


def _transitions_for(tz: datetime.tzinfo) -> _Transitions:
    try:
        found = _TRANSITIONS.get(tz)
    except TypeError:  # an unhashable third-party tzinfo: no sharing, still correct
        return _Transitions(tz)
    if found is None:
        with _TRANSITIONS_LOCK:
            found = _TRANSITIONS.setdefault(tz, _Transitions(tz))
    return found


def _resolve_zone(timezone: str | datetime.tzinfo) -> datetime.tzinfo:
    if isinstance(timezone, str):
        try:
            return zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        known = _known_zones()
        exact = [name for name in known if name.lower() == timezone.strip().lower()]
        if len(exact) == 1:  # "europe/dublin": the same zone everywhere, whatever the file system
            return zoneinfo.ZoneInfo(exact[0])
        close = difflib.get_close_matches(timezone, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (expected an IANA name such as 'Europe/Dublin')"
        raise ScheduleError(f"unknown time zone {timezone!r}{hint}")
    if isinstance(timezone, datetime.tzinfo):
        pytz_name = getattr(timezone, "zone", None)
        if hasattr(timezone, "localize") and isinstance(pytz_name, str):
            # pytz zones ignore ``fold`` and report LMT through ``replace``: use the same zone from zoneinfo.
            return _resolve_zone(pytz_name)
        return timezone
    raise ScheduleError(f"timezone must be an IANA zone name or a tzinfo, not {timezone!r}")


@functools.lru_cache(maxsize=1)
def _known_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _zone_name(tz: datetime.tzinfo) -> str:
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


# --------------------------------------------------------------------------------------------
# Cron expressions
# --------------------------------------------------------------------------------------------

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# croniter's hashed (H) and random (R) values depend on an id or on chance: workers would disagree.
_HASHED_OR_RANDOM = re.compile(r"(^|,)[hr](\(|/|,|$)", re.IGNORECASE)
_PERIOD_SAMPLE = 200


class _CronExpression:
    """One parsed cron expression, stepping over naive wall-clock times.

    The wall clock is a plain calendar without time zones: the zone is applied by
    :class:`CronSchedule`. One instance is shared by every schedule with the same expression.
    """

    def __init__(self, expression: str) -> None:
        text = expression.strip()
        text = _ALIASES.get(text.lower(), text)
        fields = text.split()
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday) "
                f"or 6 with seconds last, got {len(fields)}"
            )
        if any(_HASHED_OR_RANDOM.search(field) for field in fields):
            raise ScheduleError(f"invalid cron expression {expression!r}: hashed (H) and random (R) values are not supported")
        try:
            self._iter = croniter(text, datetime.datetime(2000, 1, 1), ret_type=datetime.datetime)
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from exc
        self.text = text
        self.has_seconds = len(fields) == 6
        hour = fields[1]
        self.hour_is_wild = "*" in hour or "/" in hour
        self._lock = threading.Lock()
        self._fields = _plain_fields(text, fields)
        first = self.next_wall(datetime.datetime(2000, 1, 1), inclusive=True)
        if first is None:
            raise ScheduleError(f"invalid cron expression {expression!r}: it never matches")
        self._first = first

    def next_wall(self, wall: datetime.datetime, inclusive: bool) -> datetime.datetime | None:
        """The first matching naive wall time after ``wall`` (or at it, if ``inclusive``)."""
        if self._fields is not None:
            return self._fields.next_wall(wall, inclusive)
        return self.next_wall_croniter(wall, inclusive)

    def next_wall_croniter(self, wall: datetime.datetime, inclusive: bool) -> datetime.datetime | None:
        """:meth:`next_wall` through croniter, for every expression (and to cross-check the fast path)."""
        start = wall - _ONE_MICROSECOND if inclusive else wall
        with self._lock:
            try:
                self._iter.set_current(start, force=True)
                result: datetime.datetime = self._iter.get_next(datetime.datetime)
            except (CroniterBadDateError, OverflowError, ValueError):
                return None
        return result

    @functools.cached_property
    def min_period(self) -> datetime.timedelta:
        """The shortest spacing between consecutive matches among the first few hundred.

        A sample, not a proof: it bounds ``jitter`` so that a jittered slot stays before the
        next plain one in all the usual expressions.
        """
        shortest = datetime.timedelta.max
        previous = self._first
        for _ in range(_PERIOD_SAMPLE):
            following = self.next_wall(previous, inclusive=False)
            if following is None:
                break
            shortest = min(shortest, following - previous)
            previous = following
        return shortest


class _PlainFields:
    """A fast matcher for expressions whose fields are plain value sets (no ``L``, ``W`` or ``#``).

    Stepping through croniter costs about 25 microseconds; this costs a few. It reads the value
    sets croniter expanded, so both agree on the meaning of every field, including croniter's
    rule that day-of-month and day-of-week combine with OR only when neither expands to ``*``.
    """

    def __init__(
        self,
        seconds: tuple[int, ...],
        minutes: tuple[int, ...],
        hours: tuple[int, ...],
        days: frozenset[int] | None,
        months: tuple[int, ...],
        weekdays: frozenset[int] | None,
        unit: datetime.timedelta,
    ) -> None:
        self.seconds, self.minutes, self.hours, self.months = seconds, minutes, hours, months
        self.days, self.weekdays, self.unit = days, weekdays, unit

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        days, weekdays = self.days, self.weekdays
        if days is None and weekdays is None:
            return True
        if weekdays is None:
            return days is not None and day in days
        # When only one of the two is restricted the other contributes False: OR is then that one.
        by_day = days is not None and day in days
        return by_day or (weekdays is not None and (datetime.date(year, month, day).weekday() + 1) % 7 in weekdays)

    def next_wall(self, wall: datetime.datetime, inclusive: bool) -> datetime.datetime | None:
        unit = self.unit
        start = wall.replace(microsecond=0) if unit.seconds == 1 else wall.replace(second=0, microsecond=0)
        if not (inclusive and start == wall):
            start += unit
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        seconds, minutes, hours, months = self.seconds, self.minutes, self.hours, self.months
        last_year = min(year + _MAX_YEARS_BETWEEN_MATCHES, datetime.MAXYEAR)
        while year <= last_year:
            i = bisect.bisect_left(months, month)
            if i == len(months):
                year, month, day, hour, minute, second = year + 1, months[0], 1, hours[0], minutes[0], seconds[0]
                continue
            if months[i] != month:
                month, day, hour, minute, second = months[i], 1, hours[0], minutes[0], seconds[0]
            length = _MONTH_LENGTHS[month] + (month == 2 and calendar.isleap(year))
            while day <= length and not self._day_matches(year, month, day):
                day, hour, minute, second = day + 1, hours[0], minutes[0], seconds[0]
            if day > length:
                month, day, hour, minute, second = month + 1, 1, hours[0], minutes[0], seconds[0]
                continue
            i = bisect.bisect_left(hours, hour)
            if i == len(hours):
                day, hour, minute, second = day + 1, hours[0], minutes[0], seconds[0]
                continue
            if hours[i] != hour:
                hour, minute, second = hours[i], minutes[0], seconds[0]
            i = bisect.bisect_left(minutes, minute)
            if i == len(minutes):
                hour, minute, second = hour + 1, minutes[0], seconds[0]
                if hour > 23:
                    day, hour = day + 1, hours[0]
                continue
            if minutes[i] != minute:
                minute, second = minutes[i], seconds[0]
            i = bisect.bisect_left(seconds, second)
            if i == len(seconds):
                minute, second = minute + 1, seconds[0]
                if minute > 59:
                    hour, minute = hour + 1, minutes[0]
                    if hour > 23:
                        day, hour = day + 1, hours[0]
                continue
            return datetime.datetime(year, month, day, hour, minute, seconds[i])
        return None


_MAX_YEARS_BETWEEN_MATCHES = 50  # croniter's own limit
_MONTH_LENGTHS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _plain_fields(text: str, fields: list[str]) -> _PlainFields | None:
    """The fast matcher for ``text``, or ``None`` when it uses croniter-only syntax."""
    expanded, nth_weekday = croniter.expand(text)
    if nth_weekday or "w" in fields[2].lower():
        return None
    sets: list[tuple[int, ...] | None] = []
    for values in expanded:
        if values == ["*"]:
            sets.append(None)
        elif all(isinstance(value, int) for value in values):
            sets.append(tuple(sorted({int(value) for value in values})))
        else:
            return None
    full = (range(60), range(60), range(24), range(1, 32), range(1, 13), range(7))
    minute, hour, day, month, weekday = sets[:5]
    second: tuple[int, ...] | None = sets[5] if len(sets) == 6 else (0,)

    def every(values: tuple[int, ...] | None, index: int) -> tuple[int, ...]:
        return tuple(full[index]) if values is None else values

    return _PlainFields(
        seconds=every(second, 0),
        minutes=every(minute, 1),
        hours=every(hour, 2),
        days=None if day is None else frozenset(day),
        months=every(month, 4),
        weekdays=None if weekday is None else frozenset(weekday),
        unit=datetime.timedelta(seconds=1) if len(sets) == 6 else datetime.timedelta(minutes=1),
    )


@functools.lru_cache(maxsize=4096)
def _parse_cron(expression: str) -> _CronExpression:
    return _CronExpression(expression)


# --------------------------------------------------------------------------------------------
# Jitter
# --------------------------------------------------------------------------------------------


def jitter_offset(key: str, jitter: datetime.timedelta | None) -> datetime.timedelta:
    """The deterministic offset in ``[0, jitter)`` for the instance named ``key``.

    Derived from BLAKE2b of the UTF-8 key, so it is the same on every machine, in every process
    and across restarts. Microsecond resolution; zero when ``jitter`` is ``None`` or zero.
    """
    if jitter is None:
        return _NO_OFFSET
    span = jitter // _ONE_MICROSECOND
    if span <= 0:
        return _NO_OFFSET
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16, person=b"pyncette-jitter").digest()
    return datetime.timedelta(microseconds=int.from_bytes(digest, "big") % span)


def _check_jitter(jitter: datetime.timedelta | None, period: datetime.timedelta | None, what: str) -> None:
    if jitter is None:
        return
    if not isinstance(jitter, datetime.timedelta):
        raise ScheduleError(f"jitter must be a timedelta, not {jitter!r}")
    if jitter < _NO_OFFSET:
        raise ScheduleError(f"jitter must not be negative, got {jitter}")
    if period is not None and jitter >= period:
        raise ScheduleError(f"jitter {jitter} must be shorter than the period of {what} ({period})")


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def _require_aware(moment: datetime.datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")


class Schedule(abc.ABC):
    """When a task instance runs.

    A schedule is an immutable value. It defines a strictly increasing sequence of *slots*
    (instants). Every method takes aware datetimes; ``first_run`` and ``next_after`` return UTC.
    """

    @abc.abstractmethod
    def first_run(self, now: datetime.datetime) -> datetime.datetime | None:
        """The first slot of an instance registered at ``now``, in UTC; ``None`` if there is none.

        Cron: the first slot strictly after ``now``. Interval: ``now + interval`` (plus the
        jitter offset). Once-off: the instant itself, even when it is already past.
        """

    @abc.abstractmethod
    def next_after(self, slot: datetime.datetime) -> datetime.datetime | None:
        """The slot that follows ``slot`` (the one that was due or ran), strictly later, in UTC.

        ``None`` means the schedule has no more slots. For cron schedules ``slot`` may be any
        instant and the result is the first slot strictly after it; interval schedules step from
        ``slot`` itself.
        """

    @property
    @abc.abstractmethod
    def zone(self) -> datetime.tzinfo:
        """The zone slots are shown in (``Context.scheduled_at``, previews)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line human readable description for logs and the command line."""

    def iter_after(self, after: datetime.datetime, next_slot: datetime.datetime | None = None) -> Iterator[datetime.datetime]:
        """The slots strictly after ``after``, in UTC, in order (possibly endless).

        ``next_slot`` is a stored instance's next run: the sequence then follows from it (interval
        schedules are anchored at their registration, which only the stored slot remembers).
        Without it, an interval schedule is previewed as if registered at ``after``.
        """
        slot = self.next_after(after) if next_slot is None else next_slot.astimezone(UTC)
        while slot is not None:
            if slot > after:
                yield slot
            slot = self.next_after(slot if slot > after else after)

    def next_runs(
        self, n: int, after: datetime.datetime, *, next_slot: datetime.datetime | None = None
    ) -> list[datetime.datetime]:
        """Up to ``n`` upcoming slots strictly after ``after``, as aware datetimes in :attr:`zone`.

        Policies (DST, jitter) apply as they do to execution. See :meth:`iter_after` for
        ``next_slot``.
        """
        _require_aware(after, "after")
        runs: list[datetime.datetime] = []
        if n <= 0:
            return runs
        for slot in self.iter_after(after, next_slot):
            runs.append(slot.astimezone(self.zone))
            if len(runs) >= n:
                break
        return runs


@attrs.frozen
class CronSchedule(Schedule):
    """A cron expression evaluated on the wall clock of ``timezone``; slots are returned in UTC.

    ``expression`` has 5 fields (minute hour day-of-month month day-of-week) or 6 with *seconds
    as the last field* (``"* * * * * */10"`` is every ten seconds), or one of the aliases
    ``@yearly @annually @monthly @weekly @daily @midnight @hourly``. Day-of-month and day-of-week
    combine with OR when both are restricted, as in Vixie cron; croniter's ``L``, ``W`` and ``#``
    are supported, its hashed (``H``) and random (``R``) values are not.

    Daylight-saving rules (worked examples in ``docs/schedules.md``):

    - A wall time that does not exist (spring forward) is, under :attr:`DstGap.TRANSITION`, run at
      the instant the gap ends (02:30 on a New York spring-forward day runs at 03:00 EDT); under
      :attr:`DstGap.SHIFT`, at the wall time shifted forward by the length of the gap (03:30 EDT),
      which is reading it with the offset in force before the change; under :attr:`DstGap.SKIP`
      it does not run that day.
    - A wall time that occurs twice (fall back) runs on the :attr:`DstFold.FIRST` occurrence, the
      :attr:`DstFold.LAST` one, or :attr:`DstFold.BOTH`.
    - Defaults (``None``), after classic Vixie cron: a *fixed-time* job, whose hour field holds
      neither ``*`` nor ``/``, uses TRANSITION and FIRST; a job whose hour field is a wildcard or a
      step (``"*/15 * * * *"``, ``"0 * * * *"``, ``"0 */2 * * *"``, ``@hourly``) runs at every real
      instant whose wall time matches, which is SKIP and BOTH.

    Whatever the policy, the slots form a strictly increasing sequence: all the matches in one gap
    are one TRANSITION slot, and a TRANSITION or SHIFT slot that lands on a slot of its own is one
    slot, not two.

    ``jitter`` moves every slot later by :func:`jitter_offset` of ``jitter_key``; it must be
    shorter than the shortest spacing of the expression's matches.
    """

    expression: str
    timezone: str | datetime.tzinfo = "UTC"
    dst_gap: DstGap | None = attrs.field(default=None, kw_only=True)
    dst_fold: DstFold | None = attrs.field(default=None, kw_only=True)
    jitter: datetime.timedelta | None = attrs.field(default=None, kw_only=True)
    jitter_key: str = attrs.field(default="", kw_only=True)

    _cron: _CronExpression = attrs.field(init=False, eq=False, repr=False)
    _tz: datetime.tzinfo = attrs.field(init=False, eq=False, repr=False)
    _transitions: _Transitions = attrs.field(init=False, eq=False, repr=False)
    _gap: DstGap = attrs.field(init=False, eq=False, repr=False)
    _fold: DstFold = attrs.field(init=False, eq=False, repr=False)
    _offset: datetime.timedelta = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise ScheduleError(f"cron expression must be a string, not {self.expression!r}")
        cron = _parse_cron(self.expression)
        tz = _resolve_zone(self.timezone)
        if self.dst_gap is not None and not isinstance(self.dst_gap, DstGap):
            raise ScheduleError(f"dst_gap must be a DstGap, not {self.dst_gap!r}")
        if self.dst_fold is not None and not isinstance(self.dst_fold, DstFold):
            raise ScheduleError(f"dst_fold must be a DstFold, not {self.dst_fold!r}")
        _check_jitter(self.jitter, cron.min_period if self.jitter else None, f"cron expression {self.expression!r}")
        wild = cron.hour_is_wild
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_transitions", _transitions_for(tz))
        object.__setattr__(self, "_gap", self.dst_gap or (DstGap.SKIP if wild else DstGap.TRANSITION))
        object.__setattr__(self, "_fold", self.dst_fold or (DstFold.BOTH if wild else DstFold.FIRST))
        object.__setattr__(self, "_offset", jitter_offset(self.jitter_key, self.jitter))

    @property
    def zone(self) -> datetime.tzinfo:
        return self._tz

    @property
    def gap_policy(self) -> DstGap:
        """The effective gap policy (``dst_gap`` or its default for this expression)."""
        return self._gap

    @property
    def fold_policy(self) -> DstFold:
        """The effective fold policy (``dst_fold`` or its default for this expression)."""
        return self._fold

    @property
    def offset(self) -> datetime.timedelta:
        """The jitter offset added to every slot."""
        return self._offset

    def first_run(self, now: datetime.datetime) -> datetime.datetime | None:
        return self.next_after(now)

    def next_after(self, slot: datetime.datetime) -> datetime.datetime | None:
        _require_aware(slot, "slot")
        try:
            if self._offset:
                slot -= self._offset
            base = self._base_next(slot if slot.tzinfo is UTC else slot.astimezone(UTC))
            if base is None or not self._offset:
                return base
            return base + self._offset
        except OverflowError:  # the next slot would lie beyond datetime's range (year 9999)
            return None

    def describe(self) -> str:
        parts = [f"cron {self.expression!r} in {_zone_name(self._tz)}"]
        if self._transitions.offset(_JANUARY) != self._transitions.offset(_JULY):
            parts.append(f"dst gap {self._gap.value}, fold {self._fold.value}")
        if self._offset:
            parts.append(f"jitter {self._offset} of {self.jitter}")
        return ", ".join(parts)

    # The slots are the real instants whose wall time matches and that the fold policy admits,
    # plus (under SHIFT) each matching non-existent wall time read with the offset before its gap,
    # or (under TRANSITION) the end of each gap that holds a matching wall time.
    # The walk below visits the zone's constant-offset segments in order: inside a segment the
    # wall clock is a bijection, so the next match there is one step of the cron matcher.
    def _base_next(self, after: datetime.datetime) -> datetime.datetime | None:
        transitions = self._transitions
        best: datetime.datetime | None = None
        if self._gap is DstGap.SHIFT:
            recent = transitions.last_in(_earlier(after, _TRANSITION_REACH), after)
            if recent is not None and recent.after > recent.before and after < recent.at + (recent.after - recent.before):
                best = self._shifted(recent, _naive(after) + recent.before, inclusive=False)
        cur, inclusive = after, False
        for _ in range(_MAX_WALK_STEPS):
            offset = transitions.offset(cur)
            wall = self._cron.next_wall(_naive(cur) + offset, inclusive)
            if wall is None:
                return best
            try:
                candidate = (wall - offset).replace(tzinfo=UTC)
            except OverflowError:
                return best
            if best is not None and candidate >= best:
                return best
            transition = transitions.first_in(cur, candidate)
            if transition is None:
                verdict = self._admit(wall, candidate)
                if verdict is None:
                    return candidate
                cur, inclusive = verdict
                continue
            if transition.after > transition.before:
                if self._gap is DstGap.TRANSITION and wall < _naive(transition.at) + transition.after:
                    # ``wall`` is the first match after ``cur`` and lies in the gap: no slot comes
                    # earlier, and the gap's end (a real match there too, if any) is the slot.
                    return transition.at
                if self._gap is DstGap.SHIFT:
                    shifted = self._shifted(transition, _naive(transition.at) + transition.before, inclusive=True)
                    if shifted is not None and (best is None or shifted < best):
                        best = shifted
            cur, inclusive = transition.at, True
        raise ScheduleError(f"cron expression {self.expression!r} in {_zone_name(self._tz)}: no slot found after {after}")

    def _shifted(self, gap: _Transition, wall: datetime.datetime, inclusive: bool) -> datetime.datetime | None:
        """The first matching non-existent wall time of ``gap`` after ``wall``, shifted forward."""
        match = self._cron.next_wall(wall, inclusive)
        if match is None or match >= _naive(gap.at) + gap.after:
            return None
        return (match - gap.before).replace(tzinfo=UTC)

    def _admit(self, wall: datetime.datetime, moment: datetime.datetime) -> tuple[datetime.datetime, bool] | None:
        """``None`` if the real instant ``moment`` (wall time ``wall``) is a slot.

        Otherwise, where the walk resumes: it skips the whole run of occurrences the fold policy
        rejects, so a dense expression does not step through a repeated hour one match at a time.
        """
        if self._fold is DstFold.BOTH:
            return None
        earlier = wall.replace(tzinfo=self._tz, fold=0).utcoffset()
        later = wall.replace(tzinfo=self._tz, fold=1).utcoffset()
        if earlier == later or earlier is None or later is None:
            return None
        first = (wall - max(earlier, later)).replace(tzinfo=UTC)
        if self._fold is DstFold.FIRST:
            if moment == first:
                return None
            back = self._transitions.last_in(_earlier(moment, _TRANSITION_REACH), moment)
            if back is not None and back.before > back.after:
                return max(moment, back.at + (back.before - back.after)), True
            return moment, False
        if moment != first:
            return None
        ahead = self._transitions.first_in(moment, moment + _TRANSITION_REACH)
        if ahead is not None and ahead.before > ahead.after:
            return ahead.at, True
        return moment, False


_MAX_WALK_STEPS = 1000
_JANUARY = datetime.datetime(2025, 1, 15, tzinfo=UTC)
_JULY = datetime.datetime(2025, 7, 15, tzinfo=UTC)


def _earlier(moment: datetime.datetime, delta: datetime.timedelta) -> datetime.datetime:
    """``moment - delta``, stopping at the first representable instant."""
    try:
        return moment - delta
    except OverflowError:
        return datetime.datetime.min.replace(tzinfo=UTC)


def _naive(moment: datetime.datetime) -> datetime.datetime:
    """The UTC wall time of an aware instant, without tzinfo."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None)


@attrs.frozen
class IntervalSchedule(Schedule):
    """Every ``interval`` of real time, counted from registration.

    ``first_run(now) = now + interval + offset`` and ``next_after(slot) = slot + interval``, where
    ``offset`` is :func:`jitter_offset` of ``jitter_key`` (shorter than ``interval``).
    Shown in UTC.
    """

    interval: datetime.timedelta
    jitter: datetime.timedelta | None = attrs.field(default=None, kw_only=True)
    jitter_key: str = attrs.field(default="", kw_only=True)
    _offset: datetime.timedelta = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.interval, datetime.timedelta):
            raise ScheduleError(f"interval must be a timedelta, not {self.interval!r}")
        if self.interval <= _NO_OFFSET:
            raise ScheduleError(f"interval must be positive, got {format_duration(self.interval)}")
        _check_jitter(self.jitter, self.interval, "the interval")
        object.__setattr__(self, "_offset", jitter_offset(self.jitter_key, self.jitter))

    @property
    def zone(self) -> datetime.tzinfo:
        return UTC

    @property
    def offset(self) -> datetime.timedelta:
        """The jitter offset added to the first slot (and so to every slot)."""
        return self._offset

    def first_run(self, now: datetime.datetime) -> datetime.datetime:
        _require_aware(now, "now")
        return (now + self.interval + self._offset).astimezone(UTC)

    def next_after(self, slot: datetime.datetime) -> datetime.datetime:
        _require_aware(slot, "slot")
        return (slot + self.interval).astimezone(UTC)

    def iter_after(self, after: datetime.datetime, next_slot: datetime.datetime | None = None) -> Iterator[datetime.datetime]:
        _require_aware(after, "after")
        slot = self.first_run(after) if next_slot is None else next_slot.astimezone(UTC)
        if slot <= after:  # a stored slot that is overdue: step on its own grid, arithmetically
            slot += ((after - slot) // self.interval + 1) * self.interval
        while True:
            yield slot
            slot += self.interval

    def describe(self) -> str:
        text = f"every {format_duration(self.interval)}"
        if self._offset:
            text += f", jitter {self._offset} of {self.jitter}"
        return text


@attrs.frozen
class OnceSchedule(Schedule):
    """A single slot at ``execute_at`` (aware); shown in ``execute_at``'s own zone.

    ``first_run`` returns ``execute_at`` even when it is in the past, so a once-off task registered
    late runs at once; ``next_after`` is always ``None``.
    """

    execute_at: datetime.datetime

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.execute_at, datetime.datetime):
            raise ScheduleError(f"execute_at must be a datetime, not {self.execute_at!r}")
        if self.execute_at.tzinfo is None or self.execute_at.utcoffset() is None:
            raise ScheduleError(f"execute_at must be timezone-aware, got {self.execute_at!r}")

    @property
    def zone(self) -> datetime.tzinfo:
        tz = self.execute_at.tzinfo
        assert tz is not None
        return tz

    def first_run(self, now: datetime.datetime) -> datetime.datetime:
        return self.execute_at.astimezone(UTC)

    def next_after(self, slot: datetime.datetime) -> None:
        return None

    def iter_after(self, after: datetime.datetime, next_slot: datetime.datetime | None = None) -> Iterator[datetime.datetime]:
        at = self.execute_at.astimezone(UTC) if next_slot is None else next_slot.astimezone(UTC)
        if at > after:
            yield at

    def describe(self) -> str:
        return f"once at {self.execute_at.isoformat()}"


def format_duration(duration: datetime.timedelta) -> str:
    """``duration`` in the largest whole unit (``"90s"``, ``"5m"``, ``"-3s"``, ``"1.5s"``), as messages show it."""
    micros = duration // _ONE_MICROSECOND
    if micros == 0:
        return "0s"
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros / 1_000_000:g}s"


# --------------------------------------------------------------------------------------------
# Building from user input
# --------------------------------------------------------------------------------------------


def _to_timedelta(value: Any, name: str) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ScheduleError(f"{name} must be finite, got {value!r}")
        try:
            return datetime.timedelta(seconds=value)
        except OverflowError as exc:
            raise ScheduleError(f"{name} is out of range: {value!r}") from exc
    raise ScheduleError(f"{name} must be a timedelta or a number of seconds, not {value!r}")


def _to_enum(enum_type: type[DstGap] | type[DstFold], value: Any, name: str) -> Any:
    if value is None or isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type(value.lower())
        except ValueError:
            pass
    choices = ", ".join(repr(member.value) for member in enum_type)
    raise ScheduleError(f"{name} must be one of {choices}, not {value!r}")


def build_schedule(
    *,
    schedule: str | None = None,
    interval: datetime.timedelta | float | None = None,
    execute_at: datetime.datetime | None = None,
    timezone: str | datetime.tzinfo | None = None,
    dst_gap: DstGap | str | None = None,
    dst_fold: DstFold | str | None = None,
    jitter: datetime.timedelta | float | None = None,
    jitter_key: str = "",
) -> Schedule:
    """Validate task options and build the :class:`Schedule` they describe.

    Exactly one of ``schedule`` (a cron expression), ``interval`` (a positive timedelta or number
    of seconds) and ``execute_at`` (a datetime) must be given.

    - ``timezone`` (IANA name or tzinfo, default UTC) and ``dst_gap`` / ``dst_fold`` (enum members
      or their string values) apply to cron schedules. ``timezone`` is also accepted with a *naive*
      ``execute_at``, which is then read as a wall time in that zone (a non-existent wall time
      is shifted forward by the gap, an ambiguous one means its first occurrence); a naive
      ``execute_at`` without ``timezone`` is rejected rather than guessed.
    - ``jitter`` (timedelta or seconds, non-negative, shorter than the period) applies to cron and
      interval schedules; ``jitter_key`` is the instance's full name.

    Raises :class:`ScheduleError` naming the offending value.
    """
    given = [
        name for name, value in (("schedule", schedule), ("interval", interval), ("execute_at", execute_at)) if value is not None
    ]
    if len(given) != 1:
        got = ", ".join(given) if given else "none"
        raise ScheduleError(f"exactly one of schedule=, interval=, execute_at= must be given (got: {got})")
    gap = _to_enum(DstGap, dst_gap, "dst_gap")
    fold = _to_enum(DstFold, dst_fold, "dst_fold")
    jitter_delta = None if jitter is None else _to_timedelta(jitter, "jitter")
    if not isinstance(jitter_key, str):
        raise ScheduleError(f"jitter_key must be a string, not {jitter_key!r}")
    if schedule is None and (gap is not None or fold is not None):
        raise ScheduleError("dst_gap= and dst_fold= apply only to cron schedules (schedule=)")
    if schedule is not None:
        return CronSchedule(
            schedule,
            "UTC" if timezone is None else timezone,
            dst_gap=gap,
            dst_fold=fold,
            jitter=jitter_delta,
            jitter_key=jitter_key,
        )
    if interval is not None:
        if timezone is not None:
            raise ScheduleError(
                f"timezone= applies only to cron schedules and naive execute_at, not to interval= (got {timezone!r})"
            )
        return IntervalSchedule(_to_timedelta(interval, "interval"), jitter=jitter_delta, jitter_key=jitter_key)
    assert execute_at is not None
    if jitter_delta is not None:
        raise ScheduleError("jitter= applies only to schedule= and interval=, not to execute_at=")
    if not isinstance(execute_at, datetime.datetime):
        raise ScheduleError(f"execute_at must be a datetime, not {execute_at!r}")
    if execute_at.tzinfo is None:
        if timezone is None:
            raise ScheduleError(
                f"execute_at {execute_at.isoformat()} has no time zone: pass an aware datetime or timezone= to read it in"
            )
        zone = _resolve_zone(timezone)
        execute_at = execute_at.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)
    elif timezone is not None:
        execute_at = execute_at.astimezone(_resolve_zone(timezone))
    return OnceSchedule(execute_at)


# --------------------------------------------------------------------------------------------
# Misfires
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Misfire:
    """What to do with a claimed slot (see :func:`resolve_misfire`).

    ``run`` is the slot to execute now (``Context.scheduled_at``), or ``None`` to execute nothing.
    ``next_slot`` is what to store as the instance's next run once ``run`` is done (``None``:
    the schedule is exhausted; delete the instance). ``missed`` counts slots dropped unrun,
    ``coalesced`` slots folded into ``run`` besides ``run`` itself. ``late`` tells whether the
    claimed slot was past its grace.
    """

    run: datetime.datetime | None
    next_slot: datetime.datetime | None
    missed: int = 0
    coalesced: int = 0
    late: bool = False


def resolve_misfire(
    schedule: Schedule,
    slot: datetime.datetime,
    now: datetime.datetime,
    catch_up: CatchUp,
    grace: datetime.timedelta | None,
    limit: int = 10_000,
) -> Misfire:
    """Decide how to handle the claimed slot ``slot`` at ``now``.

    A slot is *late* when ``now - slot > grace``; with ``grace=None`` nothing is ever late. A slot
    that is not late runs as normal under every policy: ``run=slot``, ``next_slot`` the slot after
    it. A late slot:

    - ``ALL``: runs as normal too, so the missed slots follow one after another;
    - ``LATEST``: one run for every slot ``<= now``: ``run`` is the latest of them,
      ``next_slot`` the first slot after ``now``, ``coalesced`` the number of the others;
    - ``SKIP``: every late slot is dropped and counted in ``missed``; the first slot that is not
      late runs now if it is already due (``run`` set) and is otherwise ``next_slot``.

    A once-off slot is dropped only under ``SKIP`` when late; otherwise it runs.

    Interval schedules are counted arithmetically, whatever the outage. Cron schedules are
    stepped one slot at a time: after ``limit`` steps the position is found directly and the
    counts stop growing, so ``missed`` and ``coalesced`` saturate at ``limit``.
    """
    _require_aware(slot, "slot")
    _require_aware(now, "now")
    if grace is not None and grace < _NO_OFFSET:
        raise ValueError(f"grace must not be negative, got {grace}")
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    slot = slot.astimezone(UTC)
    now = now.astimezone(UTC)
    late = grace is not None and now - slot > grace
    if not late or catch_up is CatchUp.ALL:
        return Misfire(run=slot, next_slot=schedule.next_after(slot), late=late)
    assert grace is not None
    if isinstance(schedule, OnceSchedule):
        if catch_up is CatchUp.SKIP:
            return Misfire(run=None, next_slot=None, missed=1, late=True)
        return Misfire(run=slot, next_slot=None, late=True)
    if isinstance(schedule, IntervalSchedule):
        return _misfire_interval(schedule.interval, slot, now, catch_up, grace)
    if catch_up is CatchUp.LATEST:
        latest, count = _last_at_or_before(schedule, slot, now, limit)
        return Misfire(run=latest, next_slot=schedule.next_after(latest), coalesced=count, late=True)
    cutoff = now - grace
    dropped = 0
    current: datetime.datetime | None = slot
    while current is not None and current < cutoff and dropped < limit:
        dropped += 1
        current = schedule.next_after(current)
    if current is not None and current < cutoff:
        current = schedule.next_after(cutoff - _ONE_MICROSECOND)
    if current is not None and current <= now:
        return Misfire(run=current, next_slot=schedule.next_after(current), missed=dropped, late=True)
    return Misfire(run=None, next_slot=current, missed=dropped, late=True)


def _misfire_interval(
    interval: datetime.timedelta, slot: datetime.datetime, now: datetime.datetime, catch_up: CatchUp, grace: datetime.timedelta
) -> Misfire:
    behind = now - slot
    if catch_up is CatchUp.LATEST:
        steps = behind // interval
        latest = slot + steps * interval
        return Misfire(run=latest, next_slot=latest + interval, coalesced=steps, late=True)
    dropped = -((grace - behind) // interval)  # slots slot + k*interval with k*interval < behind - grace
    first_kept = slot + dropped * interval
    if first_kept <= now:
        return Misfire(run=first_kept, next_slot=first_kept + interval, missed=dropped, late=True)
    return Misfire(run=None, next_slot=first_kept, missed=dropped, late=True)


def _last_at_or_before(
    schedule: Schedule, slot: datetime.datetime, now: datetime.datetime, limit: int
) -> tuple[datetime.datetime, int]:
    """The latest slot ``<= now`` from ``slot`` on, and how many slots precede it (capped)."""
    latest, count = slot, 0
    following = schedule.next_after(slot)
    while following is not None and following <= now:
        if count >= limit:
            return _last_slot_before(schedule, now, following), limit
        latest, count = following, count + 1
        following = schedule.next_after(latest)
    return latest, count


def _last_slot_before(schedule: Schedule, now: datetime.datetime, known: datetime.datetime) -> datetime.datetime:
    """The latest slot ``<= now``, given a slot ``known <= now``: search back from ``now``."""
    reach = datetime.timedelta(seconds=1)
    while True:
        probe = schedule.next_after(now - reach)
        if probe is not None and probe <= now:
            known = max(known, probe)
            break
        if now - reach <= known:
            break
        reach *= 2
    following = schedule.next_after(known)
    while following is not None and following <= now:
        known = following
        following = schedule.next_after(known)
    return known
