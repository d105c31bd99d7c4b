"""The fast cron matcher agrees with croniter on every expression it accepts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyncette.schedule import _parse_cron

RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7), (0, 59)]  # minute hour day month weekday [second]


@st.composite
def field(draw: st.DrawFn, index: int) -> str:
    lo, hi = RANGES[index]
    kind = draw(st.sampled_from(["*", "step", "range", "range-step", "list", "value", "value"]))
    if kind == "*":
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, hi))}"
    a = draw(st.integers(lo, hi))
    if kind == "value":
        return str(a)
    if kind == "list":
        values = draw(st.lists(st.integers(lo, hi), min_size=2, max_size=5, unique=True))
        return ",".join(map(str, values))
    b = draw(st.integers(a, hi))
    if kind == "range":
        return f"{a}-{b}"
    return f"{a}-{b}/{draw(st.integers(1, hi))}"


@st.composite
def expressions(draw: st.DrawFn) -> str:
    count = draw(st.sampled_from([5, 6]))
    return " ".join(draw(field(i)) for i in range(count))


starts = st.datetimes(min_value=dt.datetime(1999, 1, 1), max_value=dt.datetime(2060, 1, 1))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(expression=expressions(), start=starts, inclusive=st.booleans())
def test_fast_matcher_agrees_with_croniter(expression: str, start: dt.datetime, inclusive: bool) -> None:
    try:
        parsed = _parse_cron(expression)
    except ValueError:  # croniter rejects it (e.g. 31 February only): nothing to compare
        return
    assert parsed._fields is not None, expression
    fast, slow = start, start
    for _ in range(5):
        fast_next = parsed.next_wall(fast, inclusive)
        slow_next = parsed.next_wall_croniter(slow, inclusive)
        assert fast_next == slow_next, (expression, fast, inclusive)
        if fast_next is None or slow_next is None:
            break
        fast, slow = fast_next, slow_next


@pytest.mark.parametrize(
    "expression",
    ["0 0 L * *", "0 0 15W * *", "0 0 * * 5#2", "0 0 * * L5", "0 12 1W * *"],
)
def test_croniter_only_syntax_goes_through_croniter(expression: str) -> None:
    parsed = _parse_cron(expression)
    assert parsed._fields is None
    start = dt.datetime(2026, 1, 1)
    assert parsed.next_wall(start, inclusive=False) == parsed.next_wall_croniter(start, inclusive=False)


@pytest.mark.parametrize(
    ("expression", "start", "inclusive", "expected"),
    [
        ("* * * * *", dt.datetime(2026, 1, 1, 12, 0), True, dt.datetime(2026, 1, 1, 12, 0)),
        ("* * * * *", dt.datetime(2026, 1, 1, 12, 0), False, dt.datetime(2026, 1, 1, 12, 1)),
        ("* * * * *", dt.datetime(2026, 1, 1, 12, 0, 0, 1), True, dt.datetime(2026, 1, 1, 12, 1)),
        ("* * * * * *", dt.datetime(2026, 1, 1, 12, 0, 0, 1), True, dt.datetime(2026, 1, 1, 12, 0, 1)),
        ("0 0 29 2 *", dt.datetime(2097, 3, 1), False, dt.datetime(2104, 2, 29)),  # 2100 is not a leap year
        ("59 23 31 12 *", dt.datetime(2026, 12, 31, 23, 59), False, dt.datetime(2027, 12, 31, 23, 59)),
        ("0 0 31 * *", dt.datetime(2026, 1, 31, 0, 0, 1), False, dt.datetime(2026, 3, 31)),
        ("0 0 13 * 5", dt.datetime(2026, 1, 1), False, dt.datetime(2026, 1, 2)),
        ("0 0 * * 7", dt.datetime(2026, 1, 1), False, dt.datetime(2026, 1, 4)),
        ("0 0 1 1 *", dt.datetime(9998, 6, 1), False, dt.datetime(9999, 1, 1)),
        ("0 0 1 1 *", dt.datetime(9999, 6, 1), False, None),
    ],
)
def test_fast_matcher_edges(expression: str, start: dt.datetime, inclusive: bool, expected: dt.datetime | None) -> None:
    assert _parse_cron(expression).next_wall(start, inclusive) == expected
