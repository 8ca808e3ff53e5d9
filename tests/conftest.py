"""Fixtures shared by test modules, and the slow tests' switch: a test marked `slow` runs only
with SRCAFFE_SLOW=1 (it repeats, at length, what a quicker default test already shows)."""
import os

import pytest

from cli_forks import CliForks
from helpers import cli_environment


@pytest.fixture(scope="session")
def forks():
    """One fork server for the session: `runner` processes without the torch import each."""
    server = CliForks(dict(cli_environment(), OMP_NUM_THREADS="1"))
    yield server
    server.close()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SRCAFFE_SLOW", "0").strip() not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="slow: runs with SRCAFFE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
