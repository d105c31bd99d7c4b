"""Testing support: a controllable clock and a driver that runs an app without sleeping.

::

    clock = FakeClock()
    async with app.create(clock=clock) as ctx:
        await ctx.schedule_task(reminder, "user-1", interval=timedelta(minutes=5))
        await run_until(ctx, clock.now() + timedelta(hours=1))   # runs every slot of that hour

The backend conformance suite for repository implementations is :mod:`pyncette.testing.conformance`.
"""

from __future__ import annotations

import datetime
from typing import ClassVar

import anyio
import attrs

from pyncette.clock import SystemClock
from pyncette.clock_sync import OffsetClock
from pyncette.pyncette import PyncetteContext

UTC = datetime.timezone.utc
DEFAULT_START = datetime.datetime(2030, 1, 1, tzinfo=UTC)


@attrs.define(eq=False)
class FakeClock:
    """A clock that moves only when told to; ``sleep_until`` waits for :meth:`advance` or :meth:`set`.

    It is *virtual*: its time is simulated, so an app does not correct it to the store's clock
    unless created with ``clock_sync=True`` (see :mod:`pyncette.clock_sync`).
    """

    virtual: ClassVar[bool] = True
    current: datetime.datetime = DEFAULT_START
    _sleepers: list[tuple[datetime.datetime, anyio.Event]] = attrs.field(factory=list)

    def now(self) -> datetime.datetime:
        return self.current

    async def sleep_until(self, deadline: datetime.datetime) -> None:
        if deadline <= self.current:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        self._sleepers.append((deadline, event))
        await event.wait()

    def set(self, moment: datetime.datetime) -> None:
        """Move to ``moment`` (which must not be in the past) and wake sleepers that are due."""
        if moment.tzinfo is None:
            raise ValueError("FakeClock needs aware datetimes")
        if moment < self.current:
            raise ValueError(f"FakeClock cannot go back from {self.current} to {moment}")
        self.current = moment
        due = [(d, e) for d, e in self._sleepers if d <= moment]
        self._sleepers = [(d, e) for d, e in self._sleepers if d > moment]
        for _, event in due:
            event.set()

    def advance(self, delta: datetime.timedelta | float) -> None:
        """Move forward by ``delta`` (a timedelta or seconds)."""
        if not isinstance(delta, datetime.timedelta):
            delta = datetime.timedelta(seconds=delta)
        self.set(self.current + delta)


class SkewedClock(OffsetClock):
    """The real clock, off by ``skew`` (positive: ahead of real time), for clock-skew tests against real stores.

    It is not virtual: an app corrects it to the store's clock unless ``clock_sync=False``.
    """

    def __init__(self, skew: datetime.timedelta) -> None:
        super().__init__(SystemClock(), skew)


async def run_until(context: PyncetteContext, moment: datetime.datetime, *, max_ticks: int = 1_000_000) -> int:
    """Simulate the poll loop up to ``moment``: jump the clock from wake-up to wake-up and tick.

    The context's clock must be a :class:`FakeClock`, or the :class:`~pyncette.clock_sync.OffsetClock`
    over one that clock-skew correction puts in its place; ``moment`` is on the context's clock.
    Returns the number of executions.
    """
    clock = context.clock
    fake = clock.base if isinstance(clock, OffsetClock) else clock
    if not isinstance(fake, FakeClock):
        raise TypeError("run_until needs an app context created with clock=FakeClock()")

    def move_to(target: datetime.datetime) -> None:
        """Set the fake clock so that the context's clock reads ``target`` (never backwards)."""
        assert isinstance(fake, FakeClock)
        fake.set(max(clock.to_base(target) if isinstance(clock, OffsetClock) else target, fake.now()))

    executed = await context.tick()
    for _ in range(max_ticks):
        wake = context.next_wakeup()
        if wake > moment or clock.now() >= moment:
            if clock.now() < moment:
                move_to(moment)
                executed += await context.tick()
            return executed
        move_to(wake)
        executed += await context.tick()
    raise RuntimeError(f"run_until did not reach {moment} within {max_ticks} ticks")


__all__ = ["FakeClock", "SkewedClock", "run_until"]
