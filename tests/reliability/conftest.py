"""Fixtures shared with the benchmark tests."""

from benchmark.conftest import fake_fit  # noqa: F401 - the fixture, for this package too
