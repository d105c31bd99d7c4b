"""The soak test's judge: a pure function over the workers' ledger and the driver's log.

Nothing here reads a clock, a file or a store: :func:`check` takes the executions the workers
recorded (:class:`Run`) and what the driver did (:class:`DriverEvent`) and returns a
:class:`Verdict` with every violation it found and the totals of the run. All times are Unix
seconds from the one host clock that workers and driver share.

The properties, per execution mode:

- ``early``: no slot started before it was due (``start < slot``).
- ``duplicate``: no AT_MOST_ONCE slot ran twice.
- ``unexplained_rerun``: an AT_LEAST_ONCE slot ran again only after a run of it that did not
  commit because its worker was killed, its lease was lost, or the store connection was cut
  around its commit; a slot that committed never runs again.
- ``missing``: every AT_LEAST_ONCE slot that came due while its instance stayed scheduled,
  unchanged and unpaused for ``grace`` seconds after it ran to its end at least once. A slot still
  pending (no later slot of the instance completed) when the instance was changed, paused or
  removed is dropped by that change as documented, and only counted; at the end of the run every
  slot due ``grace`` seconds before the stop must have completed.
- ``after_unschedule``: no instance ran after ``unschedule_task`` returned. Under AT_LEAST_ONCE
  the fencing token carries the claim time (``fencing_token_after``), so the claim itself must
  precede the unschedule; under AT_MOST_ONCE, where tasks see no token, the start may trail the
  claim by at most ``amo_start_slack`` seconds.
- ``fencing``: tokens of one instance are unique, a run that starts after another ended holds a
  greater token, and no token is later than the start of its run.
"""

from __future__ import annotations

import collections
from typing import Iterable, Sequence

import attrs

AT_LEAST_ONCE = "at_least_once"
AT_MOST_ONCE = "at_most_once"
EPSILON = 0.002
"""Tolerance for times written with microsecond precision by different processes."""


@attrs.frozen(kw_only=True)
class Run:
    """One execution as a worker recorded it; ``end`` and ``outcome`` are missing when it died."""

    run_id: str
    instance: str
    mode: str
    slot: float
    token: int | None
    worker: int
    start: float
    end: float | None = None
    outcome: str | None = None


@attrs.frozen(kw_only=True)
class DriverEvent:
    """One thing the driver did, with the time it was issued and the time it returned.

    ``op`` is ``schedule`` (create or update; ``every`` seconds for the cron schedule
    ``* * * * * */every``, or ``execute_at``; ``changed`` when the definition differs from the stored one),
    ``static`` (a static task known to be registered from ``at`` on), ``pause``, ``resume``,
    ``unschedule``, ``kill`` and ``start_worker`` (``worker`` is its number, the pid of a process),
    ``cut`` (store connections disturbed; ``at`` is when the disturbance ended) or ``stop``
    (workers asked to stop). ``ok`` is false when the operation did not apply; ``error`` says why
    (``locked`` for :class:`~pyncette.errors.TaskLockedException`).
    """

    op: str
    at: float
    issued: float | None = None
    instance: str | None = None
    mode: str | None = None
    every: int | None = None
    execute_at: float | None = None
    changed: bool = True
    worker: int | None = None
    ok: bool = True
    error: str | None = None

    @property
    def began(self) -> float:
        return self.at if self.issued is None else self.issued


@attrs.frozen(kw_only=True)
class Violation:
    kind: str
    instance: str
    detail: str


@attrs.define(kw_only=True)
class Verdict:
    violations: list[Violation] = attrs.field(factory=list)
    executions: int = 0
    completed: int = 0
    by_mode: dict[str, int] = attrs.field(factory=dict)
    kills: int = 0
    workers_started: int = 0
    cuts: int = 0
    driver_ops: dict[str, int] = attrs.field(factory=dict)
    expected_slots: int = 0
    duplicates_by_cause: dict[str, int] = attrs.field(factory=dict)
    at_most_once_lost: int = 0
    pending_at_change: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def totals(self) -> dict[str, object]:
        by_kind = collections.Counter(v.kind for v in self.violations)
        return {
            "executions": self.executions,
            "completed": self.completed,
            "executions_by_mode": dict(sorted(self.by_mode.items())),
            "kills": self.kills,
            "workers_started": self.workers_started,
            "cuts": self.cuts,
            "driver_ops": dict(sorted(self.driver_ops.items())),
            "expected_at_least_once_slots": self.expected_slots,
            "duplicates_by_cause": dict(sorted(self.duplicates_by_cause.items())),
            "at_most_once_slots_lost_to_kills": self.at_most_once_lost,
            "at_least_once_slots_pending_when_changed": self.pending_at_change,
            "violations": len(self.violations),
            "violations_by_kind": dict(sorted(by_kind.items())),
        }


@attrs.frozen
class _Window:
    """An interval in which an instance stayed scheduled with one definition and unpaused."""

    start: float
    end: float
    every: int | None
    execute_at: float | None


def check(
    runs: Iterable[Run],
    events: Sequence[DriverEvent],
    *,
    grace: float,
    amo_start_slack: float = 1.0,
    cut_window: float = 15.0,
) -> Verdict:
    """Judge a soak run; see the module docstring for the properties.

    ``grace`` bounds how long a due AT_LEAST_ONCE slot may wait for a successful run despite
    kills and cuts (a lease plus restart and back-off time). ``cut_window`` is how long after a
    run's end a connection cut may still have swallowed its commit.
    """
    runs = sorted(runs, key=lambda r: r.start)
    verdict = Verdict()
    verdict.executions = len(runs)
    verdict.completed = sum(1 for r in runs if r.end is not None)
    verdict.by_mode = dict(collections.Counter(r.mode for r in runs))
    ops = collections.Counter(e.op for e in events)
    verdict.driver_ops = {op: n for op, n in ops.items() if op not in ("kill", "start_worker", "cut", "stop")}
    verdict.kills = ops["kill"]
    verdict.workers_started = ops["start_worker"]
    verdict.cuts = ops["cut"]
    kills = {e.worker: e.at for e in events if e.op == "kill"}
    cuts = sorted(e.at for e in events if e.op == "cut")
    stop = max((e.at for e in events if e.op == "stop"), default=max((r.start for r in runs), default=0.0))

    by_instance: dict[str, list[Run]] = collections.defaultdict(list)
    for run in runs:
        by_instance[run.instance].append(run)
        if run.start < run.slot - EPSILON:
            verdict.violations.append(
                Violation(kind="early", instance=run.instance, detail=f"slot {run.slot} started at {run.start}")
            )

    causes: collections.Counter[str] = collections.Counter()
    for instance, own in by_instance.items():
        _check_fencing(instance, own, verdict)
        by_slot: dict[float, list[Run]] = collections.defaultdict(list)
        for run in own:
            by_slot[run.slot].append(run)
        for slot, same in by_slot.items():
            if same[0].mode == AT_MOST_ONCE:
                if len(same) > 1:
                    workers = [r.worker for r in same]
                    verdict.violations.append(
                        Violation(
                            kind="duplicate",
                            instance=instance,
                            detail=f"AT_MOST_ONCE slot {slot} ran {len(same)} times: {workers}",
                        )
                    )
                elif same[0].end is None and same[0].worker in kills:
                    verdict.at_most_once_lost += 1
                continue
            for earlier in same[:-1]:
                cause = _excuse(earlier, kills, cuts, cut_window)
                if cause is None:
                    verdict.violations.append(
                        Violation(
                            kind="unexplained_rerun",
                            instance=instance,
                            detail=f"slot {slot} ran again after run {earlier.run_id} (outcome {earlier.outcome})",
                        )
                    )
                else:
                    causes[cause] += 1
    verdict.duplicates_by_cause = dict(causes)

    _check_unscheduled(events, by_instance, amo_start_slack, verdict)
    _check_liveness(events, by_instance, grace, stop, verdict)
    return verdict


def _excuse(run: Run, kills: dict[int | None, float], cuts: list[float], cut_window: float) -> str | None:
    """Why a run of an AT_LEAST_ONCE slot may be followed by another run of it, or None."""
    if run.outcome == "succeeded":
        return None
    if run.worker in kills and kills[run.worker] >= run.start - EPSILON:
        return "worker_killed"
    if run.outcome == "lease_lost":
        return "lease_lost"
    if run.outcome in ("failed", "given_up"):
        return "failed"
    finished = run.end if run.end is not None else run.start
    if any(run.start - EPSILON <= cut <= finished + cut_window for cut in cuts):
        return "store_cut"
    return None


def _check_fencing(instance: str, own: list[Run], verdict: Verdict) -> None:
    fenced = [r for r in own if r.token is not None]
    seen: dict[int, str] = {}
    for run in fenced:
        assert run.token is not None
        if run.token in seen:
            verdict.violations.append(
                Violation(
                    kind="fencing", instance=instance, detail=f"token {run.token} held by {seen[run.token]} and {run.run_id}"
                )
            )
        seen[run.token] = run.run_id
        if run.token / 1e6 > run.start + EPSILON:
            verdict.violations.append(
                Violation(
                    kind="fencing",
                    instance=instance,
                    detail=f"token {run.token} of {run.run_id} is later than its start {run.start}",
                )
            )
    # Runs that do not overlap happened one after the other: the later one holds a later claim.
    by_end = sorted((r for r in fenced if r.end is not None), key=lambda r: r.end or 0.0)
    highest: tuple[float, int, str] | None = None
    index = 0
    for run in fenced:  # sorted by start
        while index < len(by_end) and (by_end[index].end or 0.0) < run.start - EPSILON:
            done = by_end[index]
            assert done.token is not None
            if highest is None or done.token > highest[1]:
                highest = (done.end or 0.0, done.token, done.run_id)
            index += 1
        assert run.token is not None
        if highest is not None and run.token <= highest[1]:
            verdict.violations.append(
                Violation(
                    kind="fencing",
                    instance=instance,
                    detail=f"run {run.run_id} (token {run.token}) started after {highest[2]} (token {highest[1]}) ended",
                )
            )


def _check_unscheduled(events: Sequence[DriverEvent], by_instance: dict[str, list[Run]], slack: float, verdict: Verdict) -> None:
    history: dict[str, list[DriverEvent]] = collections.defaultdict(list)
    for event in events:
        if event.instance is not None and event.op in ("schedule", "unschedule"):
            history[event.instance].append(event)
    for instance, own in history.items():
        own.sort(key=lambda e: e.began)
        for index, event in enumerate(own):
            if event.op != "unschedule" or not event.ok:
                continue
            later = [e.began for e in own[index + 1 :] if e.op == "schedule"]
            until = min(later, default=float("inf"))
            for run in by_instance.get(instance, []):
                if run.token is not None:
                    claimed, limit = run.token / 1e6, event.at
                else:
                    claimed, limit = run.start, event.at + slack
                if limit < claimed < until:
                    verdict.violations.append(
                        Violation(
                            kind="after_unschedule",
                            instance=instance,
                            detail=f"run {run.run_id} claimed/started at {claimed:.6f}, unschedule returned at {event.at:.6f}",
                        )
                    )


def _windows(events: list[DriverEvent], stop: float) -> list[_Window]:
    """Intervals in which an AT_LEAST_ONCE instance was certainly scheduled, unchanged and unpaused."""
    windows: list[_Window] = []
    current: tuple[float, int | None, float | None] | None = None
    definition: tuple[int | None, float | None] | None = None
    paused = False
    for event in sorted(events, key=lambda e: e.began):
        if not event.ok and event.error == "locked":
            continue  # a locked instance refused the change: nothing happened
        if not event.ok:
            # Unknown outcome: stop judging this instance from here on.
            if current is not None:
                windows.append(_Window(current[0], event.began, current[1], current[2]))
            return windows
        if event.op == "schedule" and not event.changed and definition is not None:
            continue  # the same definition again keeps the pending run
        if current is not None:
            windows.append(_Window(current[0], event.began, current[1], current[2]))
            current = None
        if event.op in ("schedule", "static"):
            definition = (event.every, event.execute_at)
        elif event.op == "pause":
            paused = True
        elif event.op == "resume":
            paused = False
        elif event.op == "unschedule":
            definition = None
        if definition is not None and not paused:
            current = (event.at, definition[0], definition[1])
    if current is not None:
        windows.append(_Window(current[0], stop, current[1], current[2]))
    return windows


def _check_liveness(
    events: Sequence[DriverEvent], by_instance: dict[str, list[Run]], grace: float, stop: float, verdict: Verdict
) -> None:
    history: dict[str, list[DriverEvent]] = collections.defaultdict(list)
    for event in events:
        if event.instance is not None and event.op in ("schedule", "static", "pause", "resume", "unschedule"):
            history[event.instance].append(event)
    for instance, own in history.items():
        if own[0].mode != AT_LEAST_ONCE:
            continue
        completed = [r for r in by_instance.get(instance, []) if r.end is not None]
        done = {round(r.slot, 3) for r in completed}
        for window in _windows(own, stop):
            for slot in _slots(window, grace):
                verdict.expected_slots += 1
                if round(slot, 3) in done:
                    continue
                # Slots of one instance run in order (catch_up="all"). A slot still pending when
                # the instance was changed, paused or removed is dropped by that change, which is
                # the documented behaviour; a slot passed over while a later one completed is lost.
                passed_over = any(slot < r.slot < window.end and (r.end or 0.0) <= window.end for r in completed)
                if window.end < stop and not passed_over:
                    verdict.pending_at_change += 1
                    continue
                verdict.violations.append(
                    Violation(
                        kind="missing",
                        instance=instance,
                        detail=f"slot {slot} due in [{window.start}, {window.end}) never completed",
                    )
                )


def _slots(window: _Window, grace: float) -> list[float]:
    last = window.end - grace
    if window.execute_at is not None:
        return [window.execute_at] if window.start < window.execute_at <= last else []
    if window.every is None:
        return []
    every = window.every
    first = int(window.start // every + 1) * every
    return [float(s) for s in range(first, int(last) + 1, every) if s <= last]
