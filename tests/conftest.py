"""Fixtures shared by test modules."""
import pytest

from cli_forks import CliForks
from helpers import cli_environment


@pytest.fixture(scope="session")
def forks():
    """One fork server for the session: `runner` processes without the torch import each."""
    server = CliForks(dict(cli_environment(), OMP_NUM_THREADS="1"))
    yield server
    server.close()
