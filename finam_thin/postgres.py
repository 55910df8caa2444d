"""PostgreSQL stores: thin clients of the finam SQL API.

Every rule (versions, idempotency, immutability, validation) is enforced by the
SQL functions; these classes call them over a psycopg_pool pool and map each
FC SQLSTATE to its exception. Pass ``connection=`` to run inside a caller's
transaction (nothing is committed then); otherwise each call is one statement on
an autocommit connection of the pool, committed before it returns.

Arguments PostgreSQL would refuse with an error of its own, before any finam
function runs, are refused here with InvalidArgument (FC003) naming the argument:
text that is not a ``str`` or holds ``\\u0000`` or a lone surrogate, an id that is
not a UUID, a number that is not an ``int`` (``bool`` included) or is outside the
column's 64-bit (versions, positions) or 32-bit (counts, layouts) range. ``None``
goes through: the SQL functions say which arguments may be NULL.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from numbers import Real
from typing import TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from .errors import InvalidArgument, translated_errors
from .persistence import (AppendResult, Described, NewEvent, Snapshot, StoredEvent, described,
                          encode_json_object, one_or_many, text_problem)

_Row = TypeVar("_Row")

EVENT_COLUMNS = "id, stream, type, version, payload, metadata, created_at, position, category"

APPEND_EVENT = (
    "SELECT version, position, duplicate "
    "FROM finam.append_event(%s, %s, %s, %s::jsonb, %s, %s::jsonb)"
)
# Arrays travel in binary (%b): psycopg dumps them several times faster than as text.
APPEND_BATCH = (
    "SELECT id, version, position, duplicate "
    "FROM finam.append_batch(%s, %b::uuid[], %b::text[], %b::text[]::jsonb[], %b::text[]::jsonb[], %s)"
)


READ_STREAM_JSON = "SELECT id, type, version, payload, metadata FROM finam.read_stream(%s, %s, %s)"
#: A row of read_stream_json: id, type, version, payload JSON text, metadata JSON text.
JsonRow = tuple[UUID, str, int, str, str]


class PostgresEventStore:
    """Append to and read from event streams (the finam.events table, through its functions)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- writes ---------------------------------------------------------

    def append(self, stream: str, events: NewEvent | Sequence[NewEvent], expected_version: int | None = None,
               *, connection: psycopg.Connection | None = None) -> list[AppendResult]:
        """Append one event or a batch to ``stream``, all or nothing.

        ``expected_version`` None = no check; n = the stream must be at version n
        (else WrongExpectedVersion). Events already stored with the same content
        come back with ``duplicate=True`` and nothing is written.
        """
        batch = one_or_many(events, NewEvent, f"events for stream {stream!r:.60} must be")
        if not batch:
            raise InvalidArgument(f"invalid argument: empty batch for stream {stream!r:.60}")
        for number, event in enumerate(batch, 1):
            if not isinstance(event, NewEvent):
                raise InvalidArgument(f"invalid argument: event #{number} for stream {stream!r:.60}: expected "
                                      f"NewEvent, got {type(event).__name__}")
        stream = _text(stream, "stream")
        expected_version = _integer(expected_version, "expected_version")
        # The argument names are spelled out only for an error message (lambdas called at once).
        ids = [_uuid(e.id, lambda: f"id of event #{number}") for number, e in enumerate(batch, 1)]
        types = [_text(e.type, lambda: f"type of event {e.id}") for e in batch]
        payloads = [encode_json_object(e.payload, lambda: f"payload of event {e.id}") for e in batch]
        metadata = [encode_json_object(e.metadata, lambda: f"metadata of event {e.id}") for e in batch]
        with _using(self.pool, connection) as conn:
            if len(batch) == 1:
                row = conn.execute(APPEND_EVENT, (stream, ids[0], types[0], payloads[0],
                                                  expected_version, metadata[0])).fetchone()
                return [AppendResult(ids[0], *row)]
            rows = conn.execute(APPEND_BATCH, (stream, ids, types, payloads, metadata, expected_version)).fetchall()
            return [AppendResult(*row) for row in rows]

    # -- reads ----------------------------------------------------------

    def _read(self, query: str, params: tuple, connection: psycopg.Connection | None) -> list[StoredEvent]:
        with _using(self.pool, connection) as conn:
            # tuples (whatever the caller's connection uses), then records: cheaper than a class_row factory
            with conn.cursor(row_factory=tuple_row) as cursor:
                rows = cursor.execute(query, params).fetchall()
        return [StoredEvent(*row) for row in rows]

    def read_stream(self, stream: str, from_version: int = 1, max_count: int = 1000,
                    *, connection: psycopg.Connection | None = None) -> list[StoredEvent]:
        """Events of ``stream`` from ``from_version`` on, in version order (at most ``max_count``)."""
        return self._read(f"SELECT {EVENT_COLUMNS} FROM finam.read_stream(%s, %s, %s)",
                          (_text(stream, "stream"), _integer(from_version, "from_version"),
                           _integer(max_count, "max_count", bits=32)), connection)

    def read_stream_backward(self, stream: str, from_version: int | None = None, max_count: int = 1000,
                             *, connection: psycopg.Connection | None = None) -> list[StoredEvent]:
        """Events of ``stream`` at or below ``from_version`` (None = head), newest first."""
        return self._read(f"SELECT {EVENT_COLUMNS} FROM finam.read_stream_backward(%s, %s, %s)",
                          (_text(stream, "stream"), _integer(from_version, "from_version"),
                           _integer(max_count, "max_count", bits=32)), connection)

    def iter_stream(self, stream: str, from_version: int = 1, page_size: int = 1000,
                    *, read_ahead: bool = False) -> Iterator[StoredEvent]:
        """Every event of ``stream`` from ``from_version`` on, fetched page by page, in version order.

        ``read_ahead``: while the caller works through a page, a helper thread already fetches
        the next one (on its own pool connection), so the server's time is hidden behind the
        caller's; at most one page is held ahead. For long replays.
        """
        return _pages(self.read_stream, operator.attrgetter("version"), stream, from_version, page_size, read_ahead)

    def read_stream_json(self, stream: str, from_version: int = 1, max_count: int = 1000,
                         *, connection: psycopg.Connection | None = None) -> list[JsonRow]:
        """:meth:`read_stream` for a caller that decodes the JSON itself: ``(id, type, version,
        payload, metadata)`` tuples, payload and metadata as PostgreSQL's text of the jsonb (str)."""
        params = (_text(stream, "stream"), _integer(from_version, "from_version"),
                  _integer(max_count, "max_count", bits=32))
        with _using(self.pool, connection) as conn:
            with conn.cursor(row_factory=tuple_row) as cursor:
                cursor.adapters.register_loader("jsonb", TextLoader)  # psycopg's C text loader: no decoding
                return cursor.execute(READ_STREAM_JSON, params).fetchall()

    def iter_stream_json(self, stream: str, from_version: int = 1, page_size: int = 1000,
                         *, read_ahead: bool = False) -> Iterator[JsonRow]:
        """:meth:`iter_stream` in :meth:`read_stream_json`'s rows (the replay path)."""
        return _pages(self.read_stream_json, operator.itemgetter(2), stream, from_version, page_size, read_ahead)

    def read_all(self, after_position: int = 0, max_count: int = 1000,
                 *, connection: psycopg.Connection | None = None) -> list[StoredEvent]:
        """Gap-safe page of all events after the one at ``after_position`` (0 = start).

        Pass the last row's ``position`` back to continue: every committed event
        arrives exactly once, in (transaction, position) order.
        """
        return self._read(f"SELECT {EVENT_COLUMNS} FROM finam.read_all(%s, %s)",
                          (_integer(after_position, "after_position"), _integer(max_count, "max_count", bits=32)),
                          connection)

    def read_category(self, category: str, after_position: int = 0, max_count: int = 1000,
                      *, connection: psycopg.Connection | None = None) -> list[StoredEvent]:
        """Gap-safe page of the events of every stream in ``category``, like :meth:`read_all`."""
        return self._read(f"SELECT {EVENT_COLUMNS} FROM finam.read_category(%s, %s, %s)",
                          (_text(category, "category"), _integer(after_position, "after_position"),
                           _integer(max_count, "max_count", bits=32)), connection)

    def stream_version(self, stream: str, *, connection: psycopg.Connection | None = None) -> int:
        """Current version of ``stream`` (0 when empty)."""
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.stream_version(%s)", (_text(stream, "stream"),)).fetchone()[0]

    # -- wake-ups -------------------------------------------------------

    def register_listener(self, name: str, ttl_seconds: float = 60.0) -> None:
        """Ask appends to send NOTIFY finam_events for ``ttl_seconds`` (renew before it lapses)."""
        with _using(self.pool, None) as conn:
            conn.execute("SELECT finam.register_listener(%s, make_interval(secs => %s))",
                         (_text(name, "listener name"), _ttl_seconds(ttl_seconds)))

    def unregister_listener(self, name: str) -> bool:
        """Withdraw a listener registration; True if one existed."""
        with _using(self.pool, None) as conn:
            return conn.execute("SELECT finam.unregister_listener(%s)", (_text(name, "listener name"),)).fetchone()[0]

    def head_position(self, category: str | None = None, *, connection: psycopg.Connection | None = None) -> int:
        """Position of the last event read_all (or read_category) can deliver now, 0 when none:
        a follower that starts here receives exactly the events committed from now on."""
        with _using(self.pool, connection) as conn:
            row = conn.execute(
                "SELECT position FROM finam.events "
                "WHERE (%(category)s::text IS NULL OR category = %(category)s) "
                "AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) "
                "ORDER BY transaction_id DESC, position DESC LIMIT 1",
                {"category": _text(category, "category")}).fetchone()
        return row[0] if row else 0

    def last_position(self, category: str | None = None, *, connection: psycopg.Connection | None = None) -> int:
        """Position of the last committed event in read_all (or read_category) order, readable yet or
        not, 0 when none: once :meth:`is_readable` is true for it, read_all has delivered every event
        committed before."""
        with _using(self.pool, connection) as conn:
            if category is None:
                row = conn.execute("SELECT position FROM finam.events "
                                   "ORDER BY transaction_id DESC, position DESC LIMIT 1").fetchone()
            else:
                row = conn.execute("SELECT position FROM finam.events WHERE category = %s "
                                   "ORDER BY transaction_id DESC, position DESC LIMIT 1",
                                   (_text(category, "category"),)).fetchone()
        return row[0] if row else 0

    # -- read horizon ---------------------------------------------------

    def is_readable(self, position: int, *, connection: psycopg.Connection | None = None) -> bool:
        """Whether :meth:`read_all` has reached the event at ``position``.

        True once every transaction older than the event's has ended: a reader
        following read_all from before it receives it now, and no event can still
        appear before it. False for the caller's own uncommitted append and while
        an older write transaction anywhere on the server is open. InvalidArgument
        for a position no stored (visible) event has.
        """
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.is_readable(%s)", (_integer(position, "position"),)).fetchone()[0]


class PostgresSnapshotStore:
    """Save and load stream snapshots (finam.snapshots, through its functions)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def save(self, snapshot: Snapshot, *, connection: psycopg.Connection | None = None) -> bool:
        """Store ``snapshot``; False when a snapshot at the same or a newer version is kept instead.

        SnapshotConflict when its version is outside 1..head, or the same version
        is stored with a different state.
        """
        if not isinstance(snapshot, Snapshot):
            raise InvalidArgument(f"invalid argument: expected Snapshot, got {type(snapshot).__name__}")
        stream = _text(snapshot.stream, "snapshot stream")
        version = _integer(snapshot.version, "snapshot version")
        schema_version = _integer(snapshot.schema_version, "snapshot schema_version", bits=32)
        state = encode_json_object(snapshot.state, f"snapshot state of {snapshot.stream!r}")
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.save_snapshot(%s, %s, %s::jsonb, %s)",
                                (stream, version, state, schema_version)).fetchone()[0]

    def load(self, stream: str, schema_version: int | None = None,
             *, connection: psycopg.Connection | None = None) -> Snapshot | None:
        """The snapshot of ``stream`` in layout ``schema_version`` (None = newest of any), or None."""
        with _using(self.pool, connection) as conn:
            row = conn.execute(
                "SELECT version, state, state_schema_version, created_at FROM finam.load_snapshot(%s, %s)",
                (_text(stream, "stream"), _integer(schema_version, "schema_version", bits=32))).fetchone()
        if row is None:
            return None
        version, state, layout, created_at = row
        return Snapshot(stream, version, state, layout, created_at)


class PostgresCheckpointStore:
    """Durable read_all checkpoints of named followers (finam.checkpoints, through its functions).

    A handler that follows :meth:`PostgresEventStore.read_all` keeps, per name, the
    position of the last event it handled; it resumes with
    ``read_all(after_position=store.load(name))``. Advance with compare-and-set in
    the same transaction as the handler's output (pass ``connection=``): both
    commit or neither, so after a crash exactly the unacknowledged events are
    handled again, and two workers with one name never both advance from the same
    position.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def load(self, name: str, *, connection: psycopg.Connection | None = None) -> int:
        """The stored position of ``name`` (the read_all cursor), 0 when it has none."""
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.load_checkpoint(%s)", (_text(name, "checkpoint name"),)).fetchone()[0]

    def advance(self, name: str, from_position: int, to_position: int,
                *, connection: psycopg.Connection | None = None) -> bool:
        """Move ``name`` from ``from_position`` to ``to_position`` if it is still at ``from_position``.

        True when moved (an absent checkpoint counts as 0). False, with nothing
        written, when another worker moved it first: the caller's transaction
        should then roll back its output and reload. A concurrent advance of the
        same name makes this call wait until that transaction ends. InvalidArgument
        when ``to_position`` is not a stored event's position, ``from_position`` is
        neither 0 nor one, or ``to_position`` does not come strictly after
        ``from_position`` in read_all order. Advance only to positions read_all
        delivered (or for which :meth:`PostgresEventStore.is_readable` is true).
        """
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.advance_checkpoint(%s, %s, %s)",
                                (_text(name, "checkpoint name"), _integer(from_position, "from_position"),
                                 _integer(to_position, "to_position"))).fetchone()[0]

    def delete(self, name: str, *, connection: psycopg.Connection | None = None) -> bool:
        """Remove the checkpoint of ``name``; True if one existed.

        It counts as 0 again: the follower starts over from the first event (to rebuild a projection).
        """
        with _using(self.pool, connection) as conn:
            return conn.execute("SELECT finam.delete_checkpoint(%s)", (_text(name, "checkpoint name"),)).fetchone()[0]


@contextmanager
def _using(pool: ConnectionPool, connection: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    """The caller's connection (its transaction, not committed here) or a pooled
    autocommit one; FC errors become Finam exceptions."""
    with translated_errors():
        if connection is not None:
            yield connection
        else:
            with pool.connection() as pooled:
                yield pooled


def _pages(read_page: Callable[[str, int, int], list[_Row]], version_of: Callable[[_Row], int], stream: str,
           from_version: int, page_size: int, read_ahead: bool) -> Iterator[_Row]:
    """The rows of ``read_page(stream, from_version, page_size)`` and of the pages after it, in order."""
    # Closing the iterator early waits for the one read in flight (the executor's shutdown).
    with ThreadPoolExecutor(1, "finam-read-ahead") if read_ahead else nullcontext() as executor:
        page = read_page(stream, from_version, page_size)
        while len(page) == page_size:
            next_version = version_of(page[-1]) + 1
            ahead = executor.submit(read_page, stream, next_version, page_size) if executor else None
            yield from page
            page = ahead.result() if ahead else read_page(stream, next_version, page_size)
        yield from page


# -- arguments PostgreSQL would refuse before any finam function runs -----------------------------

_INT_RANGES = {64: (-(2 ** 63), 2 ** 63 - 1), 32: (-(2 ** 31), 2 ** 31 - 1)}
MAX_LISTENER_TTL_SECONDS = 86400


def _text(value, what: Described) -> str | None:
    """``value`` if PostgreSQL can take it as text (None passes: the SQL function decides); else FC003."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid argument: {described(what)} must be a str, "
                              f"got {type(value).__name__} {value!r:.60}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidArgument(f"invalid argument: {described(what)} {value!r:.60} {problem}")
    return value


def _integer(value, what: str, *, bits: int = 64) -> int | None:
    """``value`` as an int of the SQL argument's range (bigint or integer; None passes); else FC003."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid argument: {what} must be an integer, got the bool {value!r}")
    try:
        number = operator.index(value)  # int, or an integer type such as numpy's; never a float or a str
    except TypeError:
        raise InvalidArgument(f"invalid argument: {what} must be an integer, got {type(value).__name__} "
                              f"{value!r:.60}") from None
    low, high = _INT_RANGES[bits]
    if not low <= number <= high:
        raise InvalidArgument(f"invalid argument: {what} must be within the {bits}-bit integer range "
                              f"[{low}, {high}], got {number}")
    return number


def _uuid(value, what: Described) -> UUID | None:
    """``value`` as a UUID (a UUID, or a str in a form ``uuid.UUID`` reads; None passes); else FC003."""
    if value is None or isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidArgument(f"invalid argument: {described(what)} must be a UUID, "
                          f"got {type(value).__name__} {value!r:.60}")


def _ttl_seconds(value) -> float:
    """A listener ttl in seconds: a finite real number in (0, 1 day]; else FC003 (the SQL function's rule)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or not 0 < value <= MAX_LISTENER_TTL_SECONDS:
        raise InvalidArgument(f"invalid argument: listener ttl must be between 0 (excluded) and 1 day "
                              f"({MAX_LISTENER_TTL_SECONDS} seconds), got {value!r:.60}")
    return float(value)
