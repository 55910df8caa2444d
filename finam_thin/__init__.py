"""Finam Core thin layer: Python client of the finam SQL event store.

Modules are the architecture: ``persistence`` (records the stores exchange),
``postgres`` (PostgresEventStore, PostgresSnapshotStore), ``errors`` (one
exception per SQLSTATE), ``database`` (POSTGRES_DSN or embedded PostgreSQL,
pools), ``migrations`` (yoyo), ``cli`` (the ``finam`` command).
"""

from .errors import (
    EventIdConflict,
    FinamError,
    HistoryIsImmutable,
    InvalidArgument,
    SnapshotConflict,
    WrongExpectedVersion,
)
from .persistence import AppendResult, NewEvent, Snapshot, StoredEvent
from .postgres import PostgresEventStore, PostgresSnapshotStore

__all__ = [
    "AppendResult",
    "EventIdConflict",
    "FinamError",
    "HistoryIsImmutable",
    "InvalidArgument",
    "NewEvent",
    "PostgresEventStore",
    "PostgresSnapshotStore",
    "Snapshot",
    "SnapshotConflict",
    "StoredEvent",
    "WrongExpectedVersion",
]
