"""The one source of time for the scheduler.

Everything the scheduler does with time goes through a :class:`Clock`, so a test can replace the
real one with :class:`pyncette.testing.FakeClock` and drive the whole scheduler without sleeping.
"""

from __future__ import annotations

import datetime
from typing import Protocol

import anyio

UTC = datetime.timezone.utc


class Clock(Protocol):
    """A source of the current time and a way to wait for a moment."""

    def now(self) -> datetime.datetime:
        """The current time, timezone-aware in UTC."""
        ...

    async def sleep_until(self, deadline: datetime.datetime) -> None:
        """Return at ``deadline`` or soon after; return at once if it has passed. Cancellable."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(UTC)

    async def sleep_until(self, deadline: datetime.datetime) -> None:
        await anyio.sleep(max(0.0, (deadline - self.now()).total_seconds()))
