"""Clock-skew correction: schedule on the store's time, not on this host's.

A worker whose clock runs ahead would claim instances before they are due and take over leases
that are still live by everybody else's clock; one that runs behind would start work late. Where
the store has a clock of its own (:meth:`pyncette.repository.Repository.server_time`), the app
estimates its offset from it, NTP-style, at start and every ``clock_sync_interval``, and the
context's clock becomes an :class:`OffsetClock` over the local one. The context's clock is the
scheduler's only source of time, so every claim, lease, commit, misfire and lateness decision
uses corrected time.

One sample reads ``sent`` (local), the server time, then ``received`` (local); the server's time
is taken to have been read at the midpoint, so ``offset = server - (sent + round_trip / 2)``,
wrong by at most half the round trip. Of a few samples, the one with the shortest round trip wins.
"""

from __future__ import annotations

import datetime
import logging

import anyio
import attrs

from pyncette.clock import Clock
from pyncette.errors import describe_error
from pyncette.repository import Repository

logger = logging.getLogger(__name__)

SAMPLES = 3
"""Server-time reads per estimate; the one with the shortest round trip is kept."""
RETRY_AFTER_FAILURE = datetime.timedelta(seconds=30)
"""An estimate that failed is tried again after this long (or the sync interval, if shorter)."""


@attrs.frozen
class OffsetEstimate:
    """The store's clock minus the local clock, and the round trip it was measured over."""

    offset: datetime.timedelta
    round_trip: datetime.timedelta

    @property
    def correction(self) -> datetime.timedelta:
        """The offset to apply to the local clock.

        The measured offset is uncertain by half the round trip. Within that it is taken as zero,
        so a host whose clock agrees with the store's keeps its own time exactly; beyond it the
        uncertainty is subtracted, so that a measurement error can put the corrected clock behind
        the store's (a run starts that much late) but never ahead of it (a run starts early, a
        live lease looks expired).
        """
        uncertainty = self.round_trip / 2
        if abs(self.offset) <= uncertainty:
            return datetime.timedelta(0)
        return self.offset - uncertainty


async def estimate_offset(repository: Repository, clock: Clock, samples: int = SAMPLES) -> OffsetEstimate | None:
    """Measure ``repository``'s clock against ``clock``; ``None`` when the store has no clock of its own."""
    best: OffsetEstimate | None = None
    for _ in range(samples):
        sent = clock.now()
        server = await repository.server_time()
        received = clock.now()
        if server is None:
            return None
        round_trip = received - sent
        sample = OffsetEstimate(offset=server - (sent + round_trip / 2), round_trip=round_trip)
        if best is None or sample.round_trip < best.round_trip:
            best = sample
    return best


class OffsetClock:
    """``base`` shifted by ``offset``: :meth:`now` adds it, :meth:`sleep_until` converts deadlines back.

    ``offset`` may change at any time (a re-estimate); the change applies from the next call.
    """

    def __init__(self, base: Clock, offset: datetime.timedelta = datetime.timedelta(0)) -> None:
        self.base = base
        self.offset = offset

    def now(self) -> datetime.datetime:
        return self.base.now() + self.offset

    async def sleep_until(self, deadline: datetime.datetime) -> None:
        await self.base.sleep_until(self.to_base(deadline))

    def to_base(self, moment: datetime.datetime) -> datetime.datetime:
        """The base clock's reading at which this clock reads ``moment``."""
        return moment - self.offset

    def __repr__(self) -> str:
        return f"OffsetClock({self.base!r}, offset={self.offset})"


class ClockSync:
    """Keeps :attr:`clock` (an :class:`OffsetClock` over ``base``) corrected to ``repository``'s clock.

    Estimates are due every ``interval`` of the base clock; :meth:`resync_if_due` makes one when it
    is due. A failed estimate is logged and the last one stays in force. An ``|offset|`` above
    ``warn_threshold`` is logged as a warning at every estimate. ``timeout`` bounds one estimate.
    """

    def __init__(
        self,
        repository: Repository,
        base: Clock,
        *,
        interval: datetime.timedelta,
        warn_threshold: datetime.timedelta,
        timeout: datetime.timedelta,
    ) -> None:
        self.repository = repository
        self.clock = OffsetClock(base)
        self.interval = interval
        self.warn_threshold = warn_threshold
        self.timeout = timeout
        self.last_estimate: OffsetEstimate | None = None
        self.next_estimate_at = base.now()

    async def start(self) -> bool:
        """Make the first estimate; ``False`` when the store has no clock, so there is nothing to keep in sync."""
        return await self._estimate() is not False

    @property
    def resync_at(self) -> datetime.datetime:
        """When the next estimate is due, on the corrected clock."""
        return self.next_estimate_at + self.clock.offset

    async def resync_if_due(self) -> None:
        """Re-estimate if an estimate is due by the base clock."""
        if self.clock.base.now() >= self.next_estimate_at:
            await self._estimate()

    async def _estimate(self) -> bool | None:
        """One estimate: ``True`` applied, ``None`` failed (the last estimate stays), ``False`` no clock."""
        base = self.clock.base
        try:
            with anyio.fail_after(self.timeout.total_seconds()):
                estimate = await estimate_offset(self.repository, base)
        except Exception as exc:
            self.next_estimate_at = base.now() + min(self.interval, RETRY_AFTER_FAILURE)
            logger.warning(
                "could not read the store's clock (%s); keeping the clock offset at %+.3fs",
                describe_error(exc),
                self.clock.offset.total_seconds(),
            )
            return None
        self.next_estimate_at = base.now() + self.interval
        if estimate is None:
            return False
        self.last_estimate = estimate
        self.clock.offset = estimate.correction
        seconds, round_trip = estimate.offset.total_seconds(), estimate.round_trip.total_seconds()
        if abs(estimate.offset) > self.warn_threshold:
            logger.warning(
                "this worker's clock is %.3fs %s the store's clock (measured over a %.3fs round trip); "
                "scheduling on the store's time, but check the host's time synchronisation",
                abs(seconds),
                "ahead of" if seconds < 0 else "behind",
                round_trip,
            )
        else:
            logger.debug("clock offset to the store: %+.3fs (round trip %.3fs)", seconds, round_trip)
        return True
