"""A PostgreSQL server for the store tests (pgserver ships the server binaries as a wheel), one per
test session, and a fresh database per test."""
import itertools
import logging

import pytest

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    pgserver = pytest.importorskip("pgserver", reason="pip install -e .[test] brings pgserver")
    pytest.importorskip("psycopg")
    # Its exit hook logs after pytest has closed the captured streams ("Logging error" noise).
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def pg_url(pg_server):
    name = f"store_test_{next(_counter)}"
    pg_server.psql(f"CREATE DATABASE {name};")
    return pg_server.get_uri(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path):
    """Where a store lives: an SQLite file, or a database on the PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("pg_url")
