"""Test database fixtures: a real PostgreSQL, never a mock.

The server is $POSTGRES_DSN's when it is set, else an embedded PostgreSQL in
$FINAM_TEST_DATA_DIR (default .finam/test). pytest-postgresql migrates a
template database once per session; every test that asks for ``db``/``dsn``
gets a fresh copy of it, dropped afterwards. PL/pgSQL runs with
plpgsql.extra_errors / extra_warnings = all on every test connection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories
from pytest_postgresql.janitor import DatabaseJanitor

from finam_thin import migrations
from finam_thin.database import configure_connection, create_pool, start_embedded_server
from finam_thin.postgres import PostgresEventStore, PostgresSnapshotStore

REPO_ROOT = Path(__file__).resolve().parent.parent
STRICT_PLPGSQL = "-c plpgsql.extra_errors=all -c plpgsql.extra_warnings=all"
os.environ["PGOPTIONS"] = (os.environ.get("PGOPTIONS", "") + " " + STRICT_PLPGSQL).strip()


def _server_params() -> dict:
    """Connection parameters of the test server (no database name)."""
    dsn = os.environ.get("POSTGRES_DSN")
    if dsn:
        print("\n[finam tests] using the server of POSTGRES_DSN", file=sys.stderr)
    else:
        data_dir = Path(os.environ.get("FINAM_TEST_DATA_DIR") or REPO_ROOT / ".finam" / "test").resolve()
        server = start_embedded_server(data_dir / "pgdata")
        _server_params.server = server  # keep the handle alive for the session
        dsn = server.get_uri()
        print(f"\n[finam tests] POSTGRES_DSN is not set: using the embedded PostgreSQL in {data_dir}",
              file=sys.stderr)
    params = conninfo_to_dict(dsn)
    params.pop("dbname", None)
    return params


SERVER = _server_params()
TEST_DBNAME = f"finam_test_{os.getpid()}"


def server_dsn(dbname: str) -> str:
    """A DSN for ``dbname`` on the test server."""
    return make_conninfo(**SERVER, dbname=dbname)


def migrate_template(host, port, user, dbname, password=None, **_ignored) -> None:
    """pytest-postgresql loader: apply every migration to the template database."""
    migrations.apply(server_dsn(dbname))


postgresql_server = factories.postgresql_noproc(
    host=SERVER.get("host"),
    port=SERVER.get("port") or 5432,
    user=SERVER.get("user") or "postgres",
    password=SERVER.get("password"),
    dbname=TEST_DBNAME,
    options=STRICT_PLPGSQL,
    load=[migrate_template],
)
postgresql = factories.postgresql("postgresql_server")


@pytest.fixture
def db(postgresql: psycopg.Connection) -> psycopg.Connection:
    """An autocommit connection to a fresh, migrated database."""
    postgresql.autocommit = True
    configure_connection(postgresql)
    return postgresql


@pytest.fixture
def dsn(db: psycopg.Connection) -> str:
    """DSN of the fresh, migrated database behind ``db``."""
    return server_dsn(db.info.dbname)


@pytest.fixture
def pool(dsn: str):
    with create_pool(dsn, max_size=10) as pool:
        yield pool


@pytest.fixture
def store(pool) -> PostgresEventStore:
    return PostgresEventStore(pool)


@pytest.fixture
def snapshot_store(pool) -> PostgresSnapshotStore:
    return PostgresSnapshotStore(pool)


@pytest.fixture
def blank_dsn(request) -> str:
    """DSN of a fresh, empty (unmigrated) database, dropped afterwards."""
    name = f"{TEST_DBNAME}_blank"
    janitor = DatabaseJanitor(user=SERVER.get("user") or "postgres", host=SERVER.get("host"),
                              port=SERVER.get("port") or 5432, password=SERVER.get("password"),
                              dbname=name)
    with janitor:
        yield server_dsn(name)


# --------------------------------------------------------------------------- the reliability suite
def pytest_addoption(parser):
    parser.addoption("--reliability", action="store_true", default=False,
                     help="also run the long reliability suite (tests marked 'reliability'): "
                          "concurrency torture, database and engine crash recovery")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``reliability`` run only with --reliability, so the default run stays fast."""
    if config.getoption("--reliability"):
        return
    skip = pytest.mark.skip(reason="reliability suite: run with --reliability (CI does)")
    for item in items:
        if "reliability" in item.keywords:
            item.add_marker(skip)
