"""The soak test runs over the same stores as the multi-process tests."""

from tests.multiprocess.conftest import store  # noqa: F401 - the fixture, reused
