"""Schema migrations: yoyo-migrations over db/migrations.

Tables and roles come from numbered SQL migrations; the API (functions, views,
triggers, privileges) is installed from one file per object by migration 0005.
Applying twice is a no-op; ``rollback`` undoes the most recent migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from yoyo import read_migrations
from yoyo.backends import get_backend_class
from yoyo.connections import DatabaseURI

from .errors import InvalidArgument


def migrations_dir() -> Path:
    """db/migrations: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "db" / "migrations", package.parent / "db" / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("db/migrations not found beside the finam_thin package")


def _backend(dsn: str):
    """A yoyo backend (psycopg 3) for a DSN in URL or key=value form."""
    params = conninfo_to_dict(dsn)
    uri = DatabaseURI(
        scheme="postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        hostname=params.pop("host", None),
        port=int(params.pop("port")) if params.get("port") else None,
        database=params.pop("dbname", None),
        args=params,
    )
    backend = get_backend_class(uri.scheme)(uri, "_yoyo_migration")
    backend.init_database()
    return backend


@dataclass(frozen=True)
class MigrationStatus:
    id: str
    applied: bool


def status(dsn: str) -> list[MigrationStatus]:
    """Every known migration, in order, and whether it is applied."""
    backend = _backend(dsn)
    try:
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            pending = {m.id for m in backend.to_apply(migrations)}
        return [MigrationStatus(m.id, m.id not in pending) for m in migrations]
    finally:
        backend.connection.close()


def apply(dsn: str) -> list[str]:
    """Apply pending migrations; return the ids applied (empty when up to date)."""
    backend = _backend(dsn)
    try:
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def rollback(dsn: str, count: int = 1) -> list[str]:
    """Roll back the ``count`` most recently applied migrations (``count`` >= 1); return their ids."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        # applied[:count] with a negative count would roll back all but the first -count migrations
        raise InvalidArgument(f"invalid argument: the number of migrations to roll back must be at least 1, "
                              f"got {count!r}")
    backend = _backend(dsn)
    try:
        migrations = read_migrations(str(migrations_dir()))
        with backend.lock():
            applied = backend.to_rollback(migrations)
            chosen = applied[:count]
            backend.rollback_migrations(chosen)
        return [m.id for m in chosen]
    finally:
        backend.connection.close()
