"""The soak checker on synthetic ledgers: each property caught, each legitimate re-run excused."""

from __future__ import annotations

import itertools

import pytest

from tests.soak.checker import AT_LEAST_ONCE, AT_MOST_ONCE, DriverEvent, Run, check

T0 = 1_000_000.0
GRACE = 5.0
_ids = itertools.count()


def run(
    slot: float,
    *,
    instance: str = "dyn/a",
    mode: str = AT_LEAST_ONCE,
    worker: int = 1,
    start: float | None = None,
    end: float | bool | None = True,
    token: int | bool | None = True,
    outcome: str | None = "succeeded",
) -> Run:
    begin = slot + 0.01 if start is None else start
    finish = begin + 0.1 if end is True else end
    fencing = int((begin - 0.005) * 1e6) if token is True and mode == AT_LEAST_ONCE else (None if token is True else token)
    return Run(
        run_id=f"r{next(_ids)}",
        instance=instance,
        mode=mode,
        slot=slot,
        token=fencing,
        worker=worker,
        start=begin,
        end=finish,
        outcome=outcome if finish is not None else None,
    )


def scheduled(
    instance: str = "dyn/a", *, at: float = T0, every: int | None = 2, mode: str = AT_LEAST_ONCE, **kw: object
) -> DriverEvent:
    return DriverEvent(op="schedule", at=at, issued=at - 0.01, instance=instance, mode=mode, every=every, **kw)  # type: ignore[arg-type]


def stop(at: float) -> DriverEvent:
    return DriverEvent(op="stop", at=at)


def every_slot(start: float, end: float, every: int = 2) -> list[float]:
    return [float(s) for s in range(int(start) + every - int(start) % every, int(end) + 1, every)]


def kinds(verdict: object) -> list[str]:
    return [v.kind for v in verdict.violations]  # type: ignore[attr-defined]


def test_a_clean_ledger_passes_and_counts() -> None:
    slots = every_slot(T0, T0 + 20 - GRACE)
    runs = [run(s) for s in slots]
    verdict = check(runs, [scheduled(), stop(T0 + 20)], grace=GRACE)
    assert verdict.ok, verdict.violations
    assert verdict.expected_slots == len(slots) == 7
    assert verdict.totals()["executions"] == 7 and verdict.totals()["violations"] == 0


def test_a_slot_started_before_it_was_due_is_reported() -> None:
    verdict = check([run(T0 + 2, start=T0 + 1.9)], [stop(T0 + 3)], grace=GRACE)
    assert kinds(verdict) == ["early"]


def test_an_at_most_once_slot_run_twice_is_reported_even_after_a_kill() -> None:
    first = run(T0 + 2, mode=AT_MOST_ONCE, worker=1, end=None)
    second = run(T0 + 2, mode=AT_MOST_ONCE, worker=2, start=T0 + 6)
    events = [DriverEvent(op="kill", at=T0 + 2.5, worker=1), stop(T0 + 10)]
    assert kinds(check([first, second], events, grace=GRACE)) == ["duplicate"]


def test_an_at_most_once_slot_lost_to_a_kill_is_counted_not_reported() -> None:
    lost = run(T0 + 2, mode=AT_MOST_ONCE, worker=1, end=None)
    verdict = check([lost], [DriverEvent(op="kill", at=T0 + 2.5, worker=1), stop(T0 + 10)], grace=GRACE)
    assert verdict.ok and verdict.at_most_once_lost == 1


def test_an_at_least_once_slot_that_came_due_and_never_completed_is_missing() -> None:
    slots = every_slot(T0, T0 + 15)
    runs = [run(s) for s in slots if s != slots[2]]
    verdict = check(runs, [scheduled(), stop(T0 + 20)], grace=GRACE)
    assert kinds(verdict) == ["missing"] and str(slots[2]) in verdict.violations[0].detail


def test_a_run_killed_before_its_end_does_not_count_as_done() -> None:
    slots = every_slot(T0, T0 + 15)
    runs = [run(s, end=None if s == slots[0] else True) for s in slots]
    events = [scheduled(), DriverEvent(op="kill", at=slots[0] + 0.05, worker=1), stop(T0 + 20)]
    assert kinds(check(runs, events, grace=GRACE)) == ["missing"]


def test_slots_within_grace_of_a_change_pause_or_stop_are_not_expected() -> None:
    events = [
        scheduled(),
        DriverEvent(op="pause", at=T0 + 10, issued=T0 + 9.99, instance="dyn/a", mode=AT_LEAST_ONCE),
        DriverEvent(op="resume", at=T0 + 30, issued=T0 + 29.99, instance="dyn/a", mode=AT_LEAST_ONCE),
        scheduled(at=T0 + 50, every=5),
        stop(T0 + 70),
    ]
    later = [run(T0 + 8), run(T0 + 48)]  # completed: the unrun slots before them were passed over
    verdict = check(later, events, grace=GRACE)
    missing = sorted(float(v.detail.split()[1]) for v in verdict.violations)
    # [T0, T0+10) every 2 minus grace, [T0+30, T0+50) every 2 minus grace, [T0+50, T0+70) every 5 minus grace
    assert missing == [*every_slot(T0, T0 + 5), *every_slot(T0 + 30, T0 + 45), *every_slot(T0 + 50, T0 + 65, 5)]


def test_a_backlog_still_pending_when_the_instance_changes_is_dropped_by_the_change_and_counted() -> None:
    events = [scheduled(), scheduled(at=T0 + 20, every=5), stop(T0 + 40)]
    done = [run(s) for s in every_slot(T0, T0 + 4)] + [run(s) for s in every_slot(T0 + 20, T0 + 35, 5)]
    verdict = check(done, events, grace=GRACE)
    assert verdict.ok, verdict.violations
    assert verdict.pending_at_change == len(every_slot(T0 + 4, T0 + 15)) == 5


def test_a_slot_passed_over_before_a_change_is_missing() -> None:
    events = [scheduled(), scheduled(at=T0 + 20, every=5), stop(T0 + 40)]
    done = [run(s) for s in every_slot(T0, T0 + 16) if s != T0 + 6] + [run(s) for s in every_slot(T0 + 20, T0 + 35, 5)]
    assert kinds(check(done, events, grace=GRACE)) == ["missing"]


def test_a_same_definition_reschedule_keeps_the_window_and_a_locked_one_changes_nothing() -> None:
    events = [
        scheduled(),
        scheduled(at=T0 + 8, changed=False),
        scheduled(at=T0 + 9, every=3, ok=False, error="locked"),
        stop(T0 + 20),
    ]
    slots = every_slot(T0, T0 + 15)
    assert check([run(s) for s in slots], events, grace=GRACE).ok
    assert kinds(check([run(s) for s in slots[:-1]], events, grace=GRACE)) == ["missing"]


def test_an_operation_with_an_unknown_outcome_ends_liveness_checks() -> None:
    events = [scheduled(), scheduled(at=T0 + 8, every=3, ok=False, error="BackendError"), stop(T0 + 40)]
    assert check([run(s) for s in every_slot(T0, T0 + 3)], events, grace=GRACE).ok


def test_a_once_off_instance_must_run_unless_unscheduled_first() -> None:
    due = T0 + 3
    once = scheduled("dyn/o", every=None, execute_at=due)
    assert kinds(check([], [once, stop(T0 + 20)], grace=GRACE)) == ["missing"]
    assert check([run(due, instance="dyn/o")], [once, stop(T0 + 20)], grace=GRACE).ok
    gone = DriverEvent(op="unschedule", at=T0 + 1, issued=T0 + 0.99, instance="dyn/o", mode=AT_LEAST_ONCE)
    assert check([], [once, gone, stop(T0 + 20)], grace=GRACE).ok


def test_a_static_task_is_expected_to_run_every_slot_from_its_declaration() -> None:
    static = DriverEvent(op="static", at=T0, instance="tick", mode=AT_LEAST_ONCE, every=1)
    runs = [run(s, instance="tick") for s in every_slot(T0, T0 + 15, 1) if s != T0 + 7]
    verdict = check(runs, [static, stop(T0 + 20)], grace=GRACE)
    assert kinds(verdict) == ["missing"]


@pytest.mark.parametrize(
    ("first", "events", "cause"),
    [
        (dict(end=None), [DriverEvent(op="kill", at=T0 + 2.05, worker=1)], "worker_killed"),
        (dict(outcome="lease_lost"), [], "lease_lost"),
        (dict(outcome=None), [DriverEvent(op="cut", at=T0 + 2.2)], "store_cut"),
        (dict(outcome="failed"), [], "failed"),
    ],
)
def test_an_at_least_once_rerun_is_excused_by_its_cause(first: dict[str, object], events: list[DriverEvent], cause: str) -> None:
    runs = [run(T0 + 2, worker=1, **first), run(T0 + 2, worker=2, start=T0 + 6)]  # type: ignore[arg-type]
    verdict = check(runs, [*events, stop(T0 + 10)], grace=GRACE)
    assert verdict.ok, verdict.violations
    assert verdict.duplicates_by_cause == {cause: 1}


def test_an_at_least_once_rerun_without_cause_or_after_a_commit_is_reported() -> None:
    unexplained = [run(T0 + 2, worker=1, outcome=None), run(T0 + 2, worker=2, start=T0 + 6)]
    assert kinds(check(unexplained, [stop(T0 + 10)], grace=GRACE)) == ["unexplained_rerun"]
    committed = [run(T0 + 2, worker=1), run(T0 + 2, worker=2, start=T0 + 6)]
    events = [DriverEvent(op="kill", at=T0 + 5, worker=1), stop(T0 + 10)]
    assert kinds(check(committed, events, grace=GRACE)) == ["unexplained_rerun"]


def test_a_run_claimed_after_unschedule_returned_is_reported() -> None:
    gone = DriverEvent(op="unschedule", at=T0 + 5, issued=T0 + 4.99, instance="dyn/a", mode=AT_LEAST_ONCE)
    claimed_before = run(T0 + 4, start=T0 + 5.3, token=int((T0 + 4.9) * 1e6))
    claimed_after = run(T0 + 6)
    verdict = check([claimed_before, claimed_after], [gone, stop(T0 + 10)], grace=GRACE)
    assert kinds(verdict) == ["after_unschedule"] and claimed_after.run_id in verdict.violations[0].detail


def test_at_most_once_runs_after_unschedule_are_judged_by_start_with_slack() -> None:
    gone = DriverEvent(op="unschedule", at=T0 + 5, issued=T0 + 4.99, instance="dyn/m", mode=AT_MOST_ONCE)
    trailing = run(T0 + 4, instance="dyn/m", mode=AT_MOST_ONCE, start=T0 + 5.2)
    late = run(T0 + 8, instance="dyn/m", mode=AT_MOST_ONCE)
    verdict = check([trailing, late], [gone, stop(T0 + 10)], grace=GRACE, amo_start_slack=1.0)
    assert kinds(verdict) == ["after_unschedule"]


def test_an_instance_scheduled_again_after_unschedule_may_run_again() -> None:
    events = [
        DriverEvent(op="unschedule", at=T0 + 5, issued=T0 + 4.99, instance="dyn/a", mode=AT_LEAST_ONCE),
        scheduled(at=T0 + 7),
        stop(T0 + 10),
    ]
    assert check([run(T0 + 8)], events, grace=GRACE).ok


def test_fencing_tokens_must_be_unique_increasing_and_not_from_the_future() -> None:
    reused = [run(T0 + 2, token=5), run(T0 + 4, token=5)]
    assert "fencing" in kinds(check(reused, [stop(T0 + 10)], grace=GRACE))
    decreasing = [run(T0 + 2, token=int((T0 + 1) * 1e6)), run(T0 + 4, token=int((T0 + 0.5) * 1e6))]
    assert kinds(check(decreasing, [stop(T0 + 10)], grace=GRACE)) == ["fencing"]
    future = [run(T0 + 2, token=int((T0 + 3) * 1e6))]
    assert kinds(check(future, [stop(T0 + 10)], grace=GRACE)) == ["fencing"]


def test_overlapping_runs_of_a_stale_worker_do_not_break_fencing_order() -> None:
    slow = run(T0 + 2, worker=1, start=T0 + 6.5, token=int((T0 + 2.01) * 1e6), end=T0 + 7, outcome="lease_lost")
    fresh = run(T0 + 2, worker=2, start=T0 + 5.5, token=int((T0 + 5.4) * 1e6), end=T0 + 8)
    verdict = check([slow, fresh], [stop(T0 + 10)], grace=GRACE)
    assert "fencing" not in kinds(verdict)


def test_totals_report_kills_cuts_and_operations() -> None:
    events = [
        DriverEvent(op="start_worker", at=T0, worker=1),
        DriverEvent(op="kill", at=T0 + 1, worker=1),
        DriverEvent(op="cut", at=T0 + 2),
        scheduled(),
        stop(T0 + 3),
    ]
    totals = check([], events, grace=GRACE).totals()
    assert (totals["kills"], totals["cuts"], totals["workers_started"], totals["driver_ops"]) == (1, 1, 1, {"schedule": 1})
