"""Shared fixtures: one temporary Prefect API for the whole session (a harness per test is slow)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
