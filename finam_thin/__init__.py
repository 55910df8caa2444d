"""Finam Core thin layer: the deterministic domain and the Python client of the finam SQL event store.

Modules are the architecture. Pure domain (no database, no clock):
``contract`` (DomainEvent, ids, canonical encoding, EventRegistry, upcasting),
``events`` (the trading events), ``portfolio`` (the PortfolioState fold).
Application: ``bus`` (EventBus: publish, then handlers after the commit, with
durable checkpoints), ``repository`` (snapshot bootstrap, SnapshotEveryN).
Storage: ``persistence`` (records the stores exchange), ``postgres``
(PostgresEventStore, PostgresSnapshotStore, PostgresCheckpointStore),
``subscription`` (EventTail, Wakeup: follow read_all, woken by NOTIFY).
Plumbing: ``errors`` (one exception per code), ``database`` (POSTGRES_DSN or
embedded PostgreSQL, pools), ``migrations`` (yoyo), ``cli`` (the ``finam`` command).
"""

from .errors import (
    EventIdConflict,
    FinamError,
    HistoryIsImmutable,
    InvalidArgument,
    SnapshotConflict,
    WrongExpectedVersion,
)
from .bus import Append, DispatchReport, EventBus, HandlerFailure, Published
from .contract import DomainEvent, EventRegistry, RecordedEvent, UndecodableEvent, UnknownEventType
from .persistence import AppendResult, NewEvent, Snapshot, StoredEvent
from .portfolio import InvalidTransition, MissingFxRate, PortfolioState
from .repository import PortfolioRepository, SnapshotEveryN, portfolio_stream
from .postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from .subscription import EventTail

__all__ = [
    "Append",
    "AppendResult",
    "DispatchReport",
    "DomainEvent",
    "EventBus",
    "EventIdConflict",
    "EventRegistry",
    "EventTail",
    "FinamError",
    "HandlerFailure",
    "HistoryIsImmutable",
    "InvalidArgument",
    "InvalidTransition",
    "MissingFxRate",
    "NewEvent",
    "PortfolioRepository",
    "PortfolioState",
    "PostgresCheckpointStore",
    "PostgresEventStore",
    "PostgresSnapshotStore",
    "Published",
    "RecordedEvent",
    "Snapshot",
    "SnapshotConflict",
    "SnapshotEveryN",
    "StoredEvent",
    "UndecodableEvent",
    "UnknownEventType",
    "WrongExpectedVersion",
    "portfolio_stream",
]
