from __future__ import annotations

import datetime
from typing import Any

import pytest

from pyncette import Pyncette
from pyncette.testing import FakeClock

UTC = datetime.timezone.utc
START = datetime.datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def make_app(**kwargs: Any) -> Pyncette:
    kwargs.setdefault("backend", "memory")
    return Pyncette(**kwargs)
