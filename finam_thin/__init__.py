"""Finam Core thin layer: Python client of the finam SQL event store.

Modules are the architecture: ``persistence`` (records the stores exchange),
``postgres`` (PostgresEventStore, PostgresSnapshotStore), ``subscription``
(EventTail: follow read_all, woken by NOTIFY), ``errors`` (one exception per SQLSTATE), ``database`` (POSTGRES_DSN or embedded PostgreSQL,
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
from .postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from .subscription import EventTail

__all__ = [
    "AppendResult",
    "EventIdConflict",
    "EventTail",
    "FinamError",
    "HistoryIsImmutable",
    "InvalidArgument",
    "NewEvent",
    "PostgresCheckpointStore",
    "PostgresEventStore",
    "PostgresSnapshotStore",
    "Snapshot",
    "SnapshotConflict",
    "StoredEvent",
    "WrongExpectedVersion",
]
