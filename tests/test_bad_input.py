"""The bad input catalogue: malformed input at the SQL API, the Python API and the ``finam`` command.

Each case is one line of a table below: what is sent, the documented code it must get, and words
its message must contain (which argument, which event, which line). Every case runs on a fresh
database seeded with a little history (events in three streams, a snapshot, a checkpoint, a live
listener), and the whole store is fingerprinted before and after the call: row counts, an md5 of a
canonical ordered dump of finam.events, finam.snapshots, finam.checkpoints and finam.listeners, and
the position sequence (no position may be drawn before the checks pass). A refused call must leave
all of it exactly as it was.

Codes (db/API.md "Error codes"; README "The `finam` command" and "The Python engine"):
- SQL: the SQLSTATE. ``FC001``..``FC005`` from the finam functions; for a value PostgreSQL itself
  cannot read as the argument's type — before any finam function runs — its own documented code:
  ``22P02`` (not JSON / not a UUID / not a number; NaN, Infinity), ``22P05`` (``\\u0000`` in JSON),
  ``22003`` (a number beyond its type's range), ``22007`` (not an interval).
- Python: the exception class and its ``.sqlstate`` (FC003 ``InvalidArgument`` for every malformed
  argument, before anything reaches the database; FC006/FC007 from the domain layer).
- CLI: exit status 1 with ``error FC00x`` on stderr, or 2 with argparse's usage for bad usage.

Run alone: ``scripts/test tests/test_bad_input.py``; the summary at the end of the module gives the
number of cases per layer and how many left the store unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid5

import psycopg
import pytest
from psycopg.types.json import Jsonb
from test_cli import run_finam

from finam_thin import (
    EventBus,
    EventIdConflict,
    InvalidArgument,
    InvalidTransition,
    NewEvent,
    PortfolioRepository,
    PostgresCheckpointStore,
    PostgresEventStore,
    PostgresSnapshotStore,
    Snapshot,
    SnapshotConflict,
    UndecodableEvent,
    WrongExpectedVersion,
)
from finam_thin.contract import DomainEvent
from finam_thin.events import (
    TRADING_EVENTS,
    CashDeposited,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    PortfolioOpened,
    Side,
    StrategySignalEvent,
)

# --------------------------------------------------------------------------- the seeded store

NS = UUID("6d1c2a4e-0b7f-4c3e-9a51-1f0e2d3c4b5a")
T0 = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
ACCOUNT = "account-1"                # two raw events; its first is snapshotted
ACC1, ACC2 = uuid5(NS, "acc-1"), uuid5(NS, "acc-2")
PORTFOLIO_ID = "seed"
PORTFOLIO = f"portfolio-{PORTFOLIO_ID}"  # an open portfolio trading AAPL
LEGACY = "portfolio-legacy"          # a portfolio whose history holds a type no class decodes
LEGACY_ID = uuid5(NS, "legacy-1")
NEW_ID = "0b0e0c0d-0000-4000-8000-00000000c0de"
INJECTION = "x'); DROP TABLE finam.events; --"
TWENTY_MB = 20 * 1024 * 1024

PORTFOLIO_EVENTS = [
    PortfolioOpened(occurred_at=T0, event_id=uuid5(NS, "p-1"), base_currency="USD"),
    CashDeposited(occurred_at=T0, event_id=uuid5(NS, "p-2"), currency="USD", amount=Decimal("100000")),
    InstrumentRegistered(occurred_at=T0, event_id=uuid5(NS, "p-3"), instrument="AAPL", asset_class="equity",
                         currency="USD"),
    MarkPriceUpdated(occurred_at=T0, event_id=uuid5(NS, "p-4"), instrument="AAPL", price=Decimal("189.25")),
]


def seed(db: psycopg.Connection) -> dict[str, int]:
    """A little history, each part in its own transaction; returns the positions by name."""
    append = "SELECT position FROM finam.append_event(%s, %s, %s, %s, NULL, %s)"
    positions = {
        "acc1": db.execute(append, (ACCOUNT, ACC1, "Deposited", Jsonb({"amount": "1"}), Jsonb({}))).fetchone()[0],
        "acc2": db.execute(append, (ACCOUNT, ACC2, "Deposited", Jsonb({"amount": "2"}), Jsonb({}))).fetchone()[0],
    }
    for event in PORTFOLIO_EVENTS:
        record = TRADING_EVENTS.encode(event)
        db.execute(append, (PORTFOLIO, record.id, record.type, Jsonb(record.payload), Jsonb(record.metadata)))
    db.execute(append, (LEGACY, LEGACY_ID, "LegacyPositionImported", Jsonb({"qty": "5"}), Jsonb({})))
    db.execute("SELECT finam.save_snapshot(%s, 1, %s)", (ACCOUNT, Jsonb({"balance": "1"})))
    db.execute("SELECT finam.advance_checkpoint('projection', 0, %s)", (positions["acc2"],))
    db.execute("SELECT finam.register_listener('watcher', '1 day')")
    return positions


FINGERPRINT = """
SELECT (SELECT count(*) FROM finam.events),
       (SELECT md5(coalesce(string_agg(e::text, E'\\n' ORDER BY e.position), '')) FROM finam.events AS e),
       (SELECT count(*) FROM finam.snapshots),
       (SELECT md5(coalesce(string_agg(s::text, E'\\n' ORDER BY s.stream, s.schema_version), ''))
        FROM finam.snapshots AS s),
       (SELECT count(*) FROM finam.checkpoints),
       (SELECT md5(coalesce(string_agg(c::text, E'\\n' ORDER BY c.name), '')) FROM finam.checkpoints AS c),
       (SELECT count(*) FROM finam.listeners),
       (SELECT md5(coalesce(string_agg(l::text, E'\\n' ORDER BY l.name), '')) FROM finam.listeners AS l),
       (SELECT last_value::text || '/' || is_called::text FROM finam.events_position_seq)
"""
FINGERPRINT_PARTS = ("events", "events md5", "snapshots", "snapshots md5", "checkpoints", "checkpoints md5",
                     "listeners", "listeners md5", "position sequence")


def fingerprint(db: psycopg.Connection) -> dict[str, object]:
    """Row counts and md5s of the four tables, and the position sequence."""
    return dict(zip(FINGERPRINT_PARTS, db.execute(FINGERPRINT).fetchone()))


#: per layer: one entry per case run, True when the store was unchanged afterwards
UNCHANGED: dict[str, list[bool]] = {"SQL": [], "Python": [], "CLI": []}


@dataclass
class Seeded:
    """The seeded store of one case, and its fingerprint before the call."""

    db: psycopg.Connection
    positions: dict[str, int]
    before: dict[str, object]

    def assert_unchanged(self, layer: str) -> None:
        """Fingerprints the store again, counts the case for the summary, and asserts nothing changed."""
        after = fingerprint(self.db)
        UNCHANGED[layer].append(after == self.before)
        changed = {k: (self.before[k], after[k]) for k in FINGERPRINT_PARTS if self.before[k] != after[k]}
        assert not changed, f"the refused call changed the store: {changed}"


@pytest.fixture
def seeded(db):
    """A fresh database with the seed's history, fingerprinted before the case. Each test compares right
    after the refused call (``assert_unchanged``); the teardown compares once more, whatever happened."""
    positions = seed(db)
    before = fingerprint(db)
    assert before["events"] == 7 and before["snapshots"] == 1 and before["checkpoints"] == 1
    assert before["listeners"] == 1
    state = Seeded(db, positions, before)
    yield state
    assert fingerprint(db) == before, "the store changed during the case"


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Prints the catalogue's figures after its last case (the README quotes them)."""
    yield
    ran = {layer: len(results) for layer, results in UNCHANGED.items()}
    unchanged = sum(sum(results) for results in UNCHANGED.values())
    line = (f"bad input catalogue: {ran['SQL']} SQL + {ran['Python']} Python API + {ran['CLI']} CLI = "
            f"{sum(ran.values())} cases; store unchanged: {unchanged}/{sum(ran.values())}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        print(f"\n{line}")


# --------------------------------------------------------------------------- SQL API (plain SQL on ``db``)

def sql(name: str, statement: str, sqlstate: str, *fragments: str, params: tuple | None = None):
    return pytest.param(statement, params, sqlstate, fragments, id=name)


def event_json(*events: dict) -> str:
    return json.dumps(list(events))


NEW = {"id": NEW_ID, "type": "Deposited", "payload": {"amount": "3"}}

SQL_CASES = [
    # name, SQL, SQLSTATE, words the message must contain
    sql("append_event: id not a UUID",
        "SELECT * FROM finam.append_event('account-1', 'not-a-uuid', 'T', '{}')", "22P02", "uuid", "not-a-uuid"),
    sql("append_event: empty stream",
        "SELECT * FROM finam.append_event('', gen_random_uuid(), 'T', '{}')", "FC003", "stream must be a non-empty"),
    sql("append_event: NULL stream",
        "SELECT * FROM finam.append_event(NULL, gen_random_uuid(), 'T', '{}')", "FC003", "stream must be a non-empty"),
    sql("append_event: 513-character stream",
        "SELECT * FROM finam.append_event(repeat('s', 513), gen_random_uuid(), 'T', '{}')",
        "FC003", "513 characters long, the limit is 512"),
    sql("append_event: empty type",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), '', '{}')",
        "FC003", "type must be a non-empty text"),
    sql("append_event: NULL payload",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', NULL)",
        "FC003", "payload must be a JSON object, got NULL"),
    sql("append_event: array payload",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '[1, 2]')",
        "FC003", "payload must be a JSON object, got array"),
    sql("append_event: string metadata",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}', NULL, '\"x\"')",
        "FC003", "metadata must be a JSON object, got string"),
    sql("append_event: 20 MB payload",
        f"SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', "
        f"jsonb_build_object('blob', repeat('y', {TWENTY_MB})))", "FC003", "the limit is 1048576"),
    sql("append_event: NaN in the payload",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{\"price\": NaN}')",
        "22P02", "invalid input syntax for type json"),
    sql("append_event: Infinity in the payload",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{\"price\": Infinity}')",
        "22P02", "invalid input syntax for type json"),
    sql("append_event: \\u0000 in the payload",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{\"note\": \"a\\u0000b\"}')",
        "22P05", "unsupported Unicode escape sequence", "\\u0000"),
    sql("append_event: number beyond numeric's range",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{\"amount\": 1e1000000}')",
        "22003", "overflows numeric"),
    sql("append_event: negative expected_version",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}', -1)",
        "FC003", "expected_version must be NULL or >= 0, got -1", "account-1"),
    sql("append_event: stale expected_version",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}', 1)",
        "FC001", "stream 'account-1': expected 1, actual 2"),
    sql("append_event: expected_version 0 on an existing stream",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}', expected_version => 0)",
        "FC001", "expected 0, actual 2"),
    sql("append_event: expected_version as an injection",
        "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}', "
        "$$0; DELETE FROM finam.events$$)", "22P02", "bigint"),
    sql("append_event: stored id, other payload",
        f"SELECT * FROM finam.append_event('account-1', '{ACC1}', 'Deposited', '{{\"amount\": \"9\"}}')",
        "FC002", str(ACC1), "differs in stream, type or payload"),
    sql("append_event: stored id, other stream",
        f"SELECT * FROM finam.append_event('account-2', '{ACC1}', 'Deposited', '{{\"amount\": \"1\"}}')",
        "FC002", str(ACC1), "account-2"),
    sql("append_event: id as an injection",
        f"SELECT * FROM finam.append_event('account-1', $${INJECTION}$$, 'T', '{{}}')", "22P02", "uuid"),
    sql("append_events: an object, not an array",
        "SELECT * FROM finam.append_events('account-1', '{}')", "FC003", "must be a JSON array, got object"),
    sql("append_events: empty array",
        "SELECT * FROM finam.append_events('account-1', '[]')", "FC003", "empty batch", "account-1"),
    sql("append_events: element not an object",
        "SELECT * FROM finam.append_events('account-1', '[1]')", "FC003", "element 1 is not a JSON object"),
    sql("append_events: unknown key",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC003", "element 1 has keys other than",
        params=(event_json({**NEW, "version": 3}),)),
    sql("append_events: id not a UUID",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC003", "element 2 has no valid UUID",
        params=(event_json(NEW, {**NEW, "id": "42"}),)),
    sql("append_events: type a number",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC003", "element 1 has no string \"type\"",
        params=(event_json({**NEW, "type": 7}),)),
    sql("append_events: payload missing",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC003", NEW_ID, "payload must be a JSON object",
        params=(event_json({"id": NEW_ID, "type": "Deposited"}),)),
    sql("append_events: an id twice",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC003", "an event id appears twice",
        params=(event_json(NEW, NEW),)),
    sql("append_events: partial overlap with stored ids",
        "SELECT * FROM finam.append_events('account-1', %s)", "FC002", "1 of its 2 event ids are already stored",
        params=(event_json({"id": str(ACC1), "type": "Deposited", "payload": {"amount": "1"}}, NEW),)),
    sql("append_events: \\u0000 inside an event",
        "SELECT * FROM finam.append_events('account-1', %s)", "22P05", "unsupported Unicode escape sequence",
        params=(event_json({**NEW, "payload": {"note": "\x00"}}),)),
    sql("append_batch: arrays of different lengths",
        "SELECT * FROM finam.append_batch('account-1', ARRAY[gen_random_uuid()], ARRAY['T', 'T'], "
        "ARRAY['{}', '{}']::jsonb[])", "FC003", "same length"),
    sql("append_batch: two-dimensional arrays",
        "SELECT * FROM finam.append_batch('account-1', ARRAY[[gen_random_uuid()], [gen_random_uuid()]], "
        "ARRAY[['T'], ['T']], ARRAY[['{}'], ['{}']]::jsonb[])", "FC003", "one-dimensional arrays"),
    sql("append_batch: a NULL id",
        "SELECT * FROM finam.append_batch('account-1', ARRAY[gen_random_uuid(), NULL], ARRAY['T', 'T'], "
        "ARRAY['{}', '{}']::jsonb[])", "FC003", "event #2 (no id)", "id must not be NULL"),
    sql("append_batch: subscripts from 0, second type empty",
        f"SELECT * FROM finam.append_batch('account-1', '[0:1]={{{NEW_ID},{uuid5(NS, 'b')}}}'::uuid[], "
        "'[0:1]={T,\"\"}'::text[], '[0:1]={\"{}\",\"{}\"}'::jsonb[])",
        "FC003", f"event #2 {uuid5(NS, 'b')}", "type must be a non-empty text"),
    sql("append_batch: empty arrays",
        "SELECT * FROM finam.append_batch('account-1', '{}'::uuid[], '{}'::text[], '{}'::jsonb[])",
        "FC003", "empty batch"),
    sql("append_batch: metadata element not an object",
        "SELECT * FROM finam.append_batch('account-1', ARRAY[gen_random_uuid()], ARRAY['T'], "
        "ARRAY['{}']::jsonb[], ARRAY['[]']::jsonb[])", "FC003", "event #1", "metadata must be a JSON object"),
    sql("read_stream: from_version 0",
        "SELECT * FROM finam.read_stream('account-1', 0)", "FC003", "from_version must be >= 1, got 0"),
    sql("read_stream: max_count 0",
        "SELECT * FROM finam.read_stream('account-1', 1, 0)", "FC003", "max_count must be >= 1, got 0"),
    sql("read_stream: max_count beyond integer",
        "SELECT * FROM finam.read_stream('account-1', 1, '3000000000')", "22003", "out of range for type integer"),
    sql("read_stream: empty stream name",
        "SELECT * FROM finam.read_stream('')", "FC003", "stream must be a non-empty text"),
    sql("read_all: negative after_position",
        "SELECT * FROM finam.read_all(-1)", "FC003", "after_position must be >= 0, got -1"),
    sql("read_all: a position no event has",
        "SELECT * FROM finam.read_all(987654321)", "FC003", "987654321 is not the position of a stored event"),
    sql("read_all: NULL max_count",
        "SELECT * FROM finam.read_all(0, NULL)", "FC003", "max_count must be >= 1, got NULL"),
    sql("read_all: position as an injection",
        "SELECT * FROM finam.read_all($$0; DELETE FROM finam.events$$)", "22P02", "bigint"),
    sql("read_category: injection (a name with '-')",
        f"SELECT * FROM finam.read_category($${INJECTION}$$)", "FC003", "without \"-\""),
    sql("save_snapshot: version beyond the head",
        "SELECT finam.save_snapshot('account-1', 3, '{}')", "FC005", "version 3 is outside 1..2"),
    sql("save_snapshot: version 0",
        "SELECT finam.save_snapshot('account-1', 0, '{}')", "FC005", "version 0 is outside 1..2"),
    sql("save_snapshot: same version, other state",
        "SELECT finam.save_snapshot('account-1', 1, '{\"balance\": \"7\"}')",
        "FC005", "version 1 (schema 1) is already stored with a different state"),
    sql("save_snapshot: state not an object",
        "SELECT finam.save_snapshot('account-1', 2, '[]')", "FC003",
        "state of stream 'account-1' must be a JSON object"),
    sql("save_snapshot: NULL version",
        "SELECT finam.save_snapshot('account-1', NULL, '{}')", "FC003",
        "version of stream 'account-1' must not be NULL"),
    sql("save_snapshot: schema_version 0",
        "SELECT finam.save_snapshot('account-1', 2, '{}', 0)", "FC003",
        "schema_version of stream 'account-1' must be >= 1"),
    sql("load_snapshot: schema_version 0",
        "SELECT * FROM finam.load_snapshot('account-1', 0)", "FC003", "schema_version", "got 0"),
    sql("load_snapshot: empty stream name",
        "SELECT * FROM finam.load_snapshot('')", "FC003", "stream must be a non-empty text"),
    sql("load_checkpoint: empty name",
        "SELECT finam.load_checkpoint('')", "FC003", "checkpoint name must be a non-empty text"),
    sql("advance_checkpoint: to a position no event has",
        "SELECT finam.advance_checkpoint('projection', 0, 987654321)", "FC003", "'projection' to position 987654321"),
    sql("advance_checkpoint: backwards",
        "SELECT finam.advance_checkpoint('projection', %s, %s)", "FC003", "not after it", params=("acc2", "acc1")),
    sql("advance_checkpoint: NULL position",
        "SELECT finam.advance_checkpoint('projection', 0, NULL)", "FC003", "must not be NULL"),
    sql("delete_checkpoint: NULL name",
        "SELECT finam.delete_checkpoint(NULL)", "FC003", "checkpoint name must be a non-empty text"),
    sql("register_listener: empty name",
        "SELECT finam.register_listener('')", "FC003", "listener name must be a non-empty text"),
    sql("register_listener: ttl of two days",
        "SELECT finam.register_listener('late', '2 days')", "FC003", "between 0 (excluded) and 1 day, got 2 days"),
    sql("register_listener: ttl 0",
        "SELECT finam.register_listener('late', '0 seconds')", "FC003", "between 0 (excluded) and 1 day"),
    sql("register_listener: ttl as an injection",
        f"SELECT finam.register_listener('late', $${INJECTION}$$)", "22007", "interval"),
]


@pytest.mark.parametrize("statement, params, sqlstate, fragments", SQL_CASES)
def test_sql_api_refuses(seeded, statement, params, sqlstate, fragments):
    if params and all(isinstance(p, str) and p in seeded.positions for p in params):
        params = tuple(seeded.positions[p] for p in params)  # positions known only once seeded
    with pytest.raises(psycopg.Error) as raised:
        seeded.db.execute(statement, params)
    seeded.assert_unchanged("SQL")
    error = raised.value
    assert error.sqlstate == sqlstate, f"expected {sqlstate}, got {error.sqlstate}: {error}"
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in: {error}"
    if sqlstate == "FC001":  # the JSON DETAIL a client retries from
        detail = json.loads(error.diag.message_detail)
        assert detail["stream"] == ACCOUNT and detail["actual"] == 2 and isinstance(detail["expected"], int)


# --------------------------------------------------------------------------- Python API

@dataclass
class Api:
    """The Python objects a case may call, over the seeded database."""

    store: PostgresEventStore
    snapshots: PostgresSnapshotStore
    checkpoints: PostgresCheckpointStore
    bus: EventBus
    repository: PortfolioRepository
    handled: list
    positions: dict[str, int]


@pytest.fixture
def api(seeded, pool) -> Api:
    store, snapshots, checkpoints = PostgresEventStore(pool), PostgresSnapshotStore(pool), PostgresCheckpointStore(pool)
    bus = EventBus(store, checkpoints)
    handled: list = []
    bus.subscribe("recorder", handled.append, category="portfolio")
    return Api(store, snapshots, checkpoints, bus, PortfolioRepository(store, snapshots), handled, seeded.positions)


@dataclass(frozen=True, kw_only=True)
class NotRegistered(DomainEvent):
    """A domain event no registry knows."""

    note: str


def ev(**fields) -> NewEvent:
    """A NewEvent for account-1, valid unless ``fields`` say otherwise."""
    return NewEvent(fields.pop("id", UUID(NEW_ID)), fields.pop("type", "Deposited"),
                    fields.pop("payload", {"amount": "3"}), fields.pop("metadata", {}))


def deposit(**fields) -> CashDeposited:
    return CashDeposited(**{"occurred_at": T0, "currency": "USD", "amount": Decimal("10"), **fields})


def signal(**fields) -> StrategySignalEvent:
    return StrategySignalEvent(**{"occurred_at": T0, "strategy": "s", "instrument": "AAPL", "side": Side.BUY,
                                  "quantity": Decimal("1"), **fields})


def py(name: str, call, exception: type, sqlstate: str, *fragments: str, check=None):
    return pytest.param(call, exception, sqlstate, fragments, check, id=name)


def stale(error: WrongExpectedVersion) -> None:
    assert (error.stream, error.expected, error.actual) == (ACCOUNT, 0, 2)


PY_CASES = [
    # name, call on the seeded Api, exception, its sqlstate, words the message must contain
    py("append: empty stream", lambda a: a.store.append("", ev()), InvalidArgument, "FC003",
       "stream must be a non-empty text"),
    py("append: 513-character stream", lambda a: a.store.append("s" * 513, ev()), InvalidArgument, "FC003",
       "513 characters long"),
    py("append: NUL in the stream", lambda a: a.store.append("account-\x00", ev()), InvalidArgument, "FC003",
       "stream", "NUL character"),
    py("append: stream not a str", lambda a: a.store.append(42, ev()), InvalidArgument, "FC003",
       "stream must be a str, got int"),
    py("append: id not a UUID", lambda a: a.store.append(ACCOUNT, ev(id="not-a-uuid")), InvalidArgument, "FC003",
       "id of event #1 must be a UUID", "not-a-uuid"),
    py("append: type not a str", lambda a: a.store.append(ACCOUNT, ev(type=7)), InvalidArgument, "FC003",
       f"type of event {NEW_ID} must be a str"),
    py("append: NULL payload", lambda a: a.store.append(ACCOUNT, ev(payload=None)), InvalidArgument, "FC003",
       f"payload of event {NEW_ID} must be a mapping", "NoneType"),
    py("append: list payload", lambda a: a.store.append(ACCOUNT, ev(payload=["amount", "3"])), InvalidArgument,
       "FC003", "must be a mapping (a JSON object), got list"),
    py("append: float NaN in the payload", lambda a: a.store.append(ACCOUNT, ev(payload={"p": float("nan")})),
       InvalidArgument, "FC003", f"payload of event {NEW_ID} is not valid JSON"),
    py("append: Decimal Infinity in the payload",
       lambda a: a.store.append(ACCOUNT, ev(payload={"p": Decimal("Infinity")})), InvalidArgument, "FC003",
       "Infinity is not a finite number"),
    py("append: \\u0000 in the payload", lambda a: a.store.append(ACCOUNT, ev(payload={"note": "a\x00b"})),
       InvalidArgument, "FC003", f"payload of event {NEW_ID} contains a NUL character"),
    py("append: lone surrogate in the payload", lambda a: a.store.append(ACCOUNT, ev(payload={"n": "\udc80"})),
       InvalidArgument, "FC003", "lone surrogate"),
    py("append: 20 MB payload", lambda a: a.store.append(ACCOUNT, ev(payload={"blob": "y" * TWENTY_MB})),
       InvalidArgument, "FC003", NEW_ID, "the limit is 1048576"),
    py("append: metadata not a mapping", lambda a: a.store.append(ACCOUNT, ev(metadata="x")), InvalidArgument,
       "FC003", f"metadata of event {NEW_ID} must be a mapping"),
    py("append: negative expected_version", lambda a: a.store.append(ACCOUNT, ev(), expected_version=-1),
       InvalidArgument, "FC003", "expected_version must be NULL or >= 0, got -1"),
    py("append: float expected_version", lambda a: a.store.append(ACCOUNT, ev(), expected_version=1.5),
       InvalidArgument, "FC003", "expected_version must be an integer, got float"),
    py("append: bool expected_version", lambda a: a.store.append(ACCOUNT, ev(), expected_version=True),
       InvalidArgument, "FC003", "expected_version must be an integer, got the bool"),
    py("append: expected_version beyond bigint", lambda a: a.store.append(ACCOUNT, ev(), expected_version=2 ** 64),
       InvalidArgument, "FC003", "64-bit integer range"),
    py("append: expected_version as an injection",
       lambda a: a.store.append(ACCOUNT, ev(), expected_version="0; DROP TABLE finam.events"), InvalidArgument,
       "FC003", "expected_version must be an integer, got str"),
    py("append: stale expected_version", lambda a: a.store.append(ACCOUNT, ev(), expected_version=0),
       WrongExpectedVersion, "FC001", "stream 'account-1': expected 0, actual 2", check=stale),
    py("append: stored id, other payload", lambda a: a.store.append(ACCOUNT, ev(id=ACC1, payload={"amount": "9"})),
       EventIdConflict, "FC002", str(ACC1)),
    py("append_batch: empty", lambda a: a.store.append(ACCOUNT, []), InvalidArgument, "FC003", "empty batch"),
    py("append_batch: a dict among the events", lambda a: a.store.append(ACCOUNT, [ev(), {"id": NEW_ID}]),
       InvalidArgument, "FC003", "event #2", "expected NewEvent, got dict"),
    py("append_batch: an id twice", lambda a: a.store.append(ACCOUNT, [ev(), ev()]), InvalidArgument, "FC003",
       "an event id appears twice"),
    py("append_batch: partial overlap", lambda a: a.store.append(ACCOUNT, [ev(id=ACC1, payload={"amount": "1"}),
                                                                           ev()]),
       EventIdConflict, "FC002", "1 of its 2 event ids are already stored"),
    py("append_batch: second id not a UUID", lambda a: a.store.append(ACCOUNT, [ev(), ev(id=12)]), InvalidArgument,
       "FC003", "id of event #2 must be a UUID, got int"),
    py("append_batch: events is None", lambda a: a.store.append(ACCOUNT, None), InvalidArgument, "FC003",
       "must be a NewEvent or a sequence of them, got NoneType"),
    py("read_all: negative position", lambda a: a.store.read_all(after_position=-1), InvalidArgument, "FC003",
       "after_position must be >= 0"),
    py("read_stream: max_count beyond integer", lambda a: a.store.read_stream(ACCOUNT, 1, 2 ** 40), InvalidArgument,
       "FC003", "max_count must be within the 32-bit integer range"),
    py("read_category: injection", lambda a: a.store.read_category(INJECTION), InvalidArgument, "FC003",
       "without \"-\""),
    py("register_listener: NaN ttl", lambda a: a.store.register_listener("late", float("nan")), InvalidArgument,
       "FC003", "listener ttl must be between 0 (excluded) and 1 day", "nan"),
    py("checkpoint advance: backwards",
       lambda a: a.checkpoints.advance("projection", a.positions["acc2"], a.positions["acc1"]), InvalidArgument,
       "FC003", "'projection'", "not after it"),
    py("EventBus.publish: a NewEvent", lambda a: a.bus.publish(PORTFOLIO, ev()), InvalidArgument, "FC003",
       "takes a DomainEvent or a sequence of them, got NewEvent"),
    py("EventBus.publish: a dict in the batch", lambda a: a.bus.publish(PORTFOLIO, [deposit(), {"type": "X"}]),
       InvalidArgument, "FC003", "expected a DomainEvent, got dict"),
    py("EventBus.publish: empty batch", lambda a: a.bus.publish(PORTFOLIO, []), InvalidArgument, "FC003",
       "empty batch for stream 'portfolio-seed'"),
    py("EventBus.publish: unregistered event class", lambda a: a.bus.publish(PORTFOLIO, NotRegistered(
        occurred_at=T0, note="n")), InvalidArgument, "FC003", "'NotRegistered' is not registered"),
    py("EventBus.publish: stale expected_version", lambda a: a.bus.publish(PORTFOLIO, deposit(), expected_version=0),
       WrongExpectedVersion, "FC001", "stream 'portfolio-seed': expected 0, actual 4"),
    py("CashDeposited: negative amount", lambda a: deposit(amount=Decimal("-5")), InvalidArgument, "FC003",
       "CashDeposited.amount must be positive, got -5"),
    py("CashDeposited: zero amount", lambda a: deposit(amount=Decimal(0)), InvalidArgument, "FC003",
       "CashDeposited.amount must be positive, got 0"),
    py("CashDeposited: NaN amount", lambda a: deposit(amount=Decimal("NaN")), InvalidArgument, "FC003",
       "CashDeposited.amount: expected a finite Decimal"),
    py("CashDeposited: float amount", lambda a: deposit(amount=0.1), InvalidArgument, "FC003",
       "CashDeposited.amount: expected a finite Decimal, got 0.1"),
    py("CashDeposited: amount as a str", lambda a: deposit(amount="100"), InvalidArgument, "FC003",
       "CashDeposited.amount: expected a finite Decimal, got '100'"),
    py("CashDeposited: amount 1E+999999999", lambda a: deposit(amount=Decimal("1E+999999999")), InvalidArgument,
       "FC003", "CashDeposited.amount", "out of range"),
    py("CashDeposited: missing amount", lambda a: CashDeposited(occurred_at=T0, currency="USD"), InvalidArgument,
       "FC003", "CashDeposited", "missing 1 required keyword-only argument: 'amount'"),
    py("CashDeposited: unknown field", lambda a: deposit(colour="red"), InvalidArgument, "FC003",
       "unexpected keyword argument 'colour'"),
    py("CashDeposited: naive occurred_at", lambda a: deposit(occurred_at=datetime(2026, 11, 24)), InvalidArgument,
       "FC003", "CashDeposited.occurred_at: expected a timezone-aware datetime"),
    py("CashDeposited: event_id not a UUID", lambda a: deposit(event_id="e-1"), InvalidArgument, "FC003",
       "CashDeposited.event_id: expected a UUID"),
    py("StrategySignalEvent: zero quantity", lambda a: signal(quantity=Decimal(0)), InvalidArgument, "FC003",
       "StrategySignalEvent.quantity must be positive, got 0"),
    py("StrategySignalEvent: side as a str", lambda a: signal(side="sideways"), InvalidArgument, "FC003",
       "StrategySignalEvent.side: expected Side"),
    py("StrategySignalEvent: neither quantity nor stop", lambda a: signal(quantity=None), InvalidArgument, "FC003",
       "needs a quantity or a stop_price"),
    py("MarkPriceUpdated: NUL in the instrument",
       lambda a: MarkPriceUpdated(occurred_at=T0, instrument="AA\x00PL", price=Decimal(1)), InvalidArgument, "FC003",
       "MarkPriceUpdated.instrument", "NUL character"),
    py("FxRateUpdated: negative rate", lambda a: FxRateUpdated(occurred_at=T0, currency="EUR", rate=Decimal("-1.1")),
       InvalidArgument, "FC003", "FxRateUpdated.rate must be positive"),
    py("InstrumentRegistered: zero lot size",
       lambda a: InstrumentRegistered(occurred_at=T0, instrument="MSFT", asset_class="equity", currency="USD",
                                      lot_size=Decimal(0)), InvalidArgument, "FC003",
       "InstrumentRegistered.lot_size must be positive"),
    py("PortfolioState: unknown instrument",
       lambda a: a.repository.load(PORTFOLIO).apply(MarkPriceUpdated(occurred_at=T0, instrument="TSLA",
                                                                     price=Decimal(1))),
       InvalidTransition, "FC007", "unknown instrument 'TSLA'"),
    py("PortfolioRepository.load: empty stream", lambda a: a.repository.load(""), InvalidArgument, "FC003",
       "stream must be a non-empty text"),
    py("PortfolioRepository.load: an event no class decodes", lambda a: a.repository.load(LEGACY), UndecodableEvent,
       "FC006", str(LEGACY_ID), "unknown event type 'LegacyPositionImported'"),
    py("PostgresSnapshotStore.save: version beyond the head",
       lambda a: a.snapshots.save(Snapshot(ACCOUNT, 3, {"balance": "3"}, 1)), SnapshotConflict, "FC005",
       "version 3 is outside 1..2"),
    py("PostgresSnapshotStore.save: same version, other state",
       lambda a: a.snapshots.save(Snapshot(ACCOUNT, 1, {"balance": "7"}, 1)), SnapshotConflict, "FC005",
       "already stored with a different state"),
    py("PostgresSnapshotStore.save: state a list", lambda a: a.snapshots.save(Snapshot(ACCOUNT, 2, [], 1)),
       InvalidArgument, "FC003", "snapshot state of 'account-1' must be a mapping"),
    py("PostgresSnapshotStore.save: version a str", lambda a: a.snapshots.save(Snapshot(ACCOUNT, "2", {}, 1)),
       InvalidArgument, "FC003", "snapshot version must be an integer, got str"),
    py("PostgresSnapshotStore.load: schema_version 0", lambda a: a.snapshots.load(ACCOUNT, 0), InvalidArgument,
       "FC003", "schema_version", "got 0"),
]


@pytest.mark.parametrize("call, exception, sqlstate, fragments, check", PY_CASES)
def test_python_api_refuses(seeded, api, call, exception, sqlstate, fragments, check):
    with pytest.raises(Exception) as raised:
        call(api)
    seeded.assert_unchanged("Python")
    error = raised.value
    assert type(error) is exception or isinstance(error, exception), f"expected {exception.__name__}: {error!r}"
    assert error.sqlstate == sqlstate
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in: {error}"
    if check:
        check(error)
    assert api.handled == [], "no handler may run after a refused publish"


# --------------------------------------------------------------------------- the finam command

GOOD_LINES = [
    '{"type": "PortfolioOpened", "occurred_at": "2026-11-24T14:30:00Z", "base_currency": "USD"}',
    '{"type": "CashDeposited", "occurred_at": "2026-11-24T14:30:00Z", "currency": "USD", "amount": "1000"}',
    '{"type": "InstrumentRegistered", "occurred_at": "2026-11-24T14:30:00Z", "instrument": "AAPL", '
    '"asset_class": "equity", "currency": "USD"}',
]
CSV_HEADER = "type,occurred_at,base_currency,currency,amount\n"


def jsonl(*extra: str) -> bytes:
    return ("\n".join(GOOD_LINES + list(extra)) + "\n").encode()


def cli(name: str, args: tuple[str, ...], status: int, *fragments: str, files: dict | None = None):
    return pytest.param(args, files or {}, status, fragments, id=name)


RUN = ("run", "in.jsonl", "--portfolio", "new")
CLI_CASES = [
    # name, arguments, exit status, words stderr must contain (status 1: after "error FC00x"), input files
    cli("run: JSONL cut off in the middle of a line", RUN, 1, "error FC003", "line 4: not valid JSON",
        "nothing was written",
        files={"in.jsonl": jsonl()[:-1] + b'\n{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:3'}),
    cli("run: JSONL cut off inside a UTF-8 character", RUN, 1, "error FC003", "line 4: not UTF-8 text",
        files={"in.jsonl": jsonl() + '{"type": "InstrumentRegistered", "instrument": "CAFÉ"'.encode()[:-2]}),
    cli("run: CSV cut off in the middle of a row", ("run", "in.csv", "--portfolio", "new"), 1, "error FC003",
        "line 3: 2 cells, the header has 5",
        files={"in.csv": (CSV_HEADER + "PortfolioOpened,2026-11-24T14:30:00Z,USD,,\nCashDeposited,2026").encode()}),
    cli("run: CSV cut off after the header", ("run", "in.csv", "--portfolio", "new"), 1, "error FC003",
        "holds no events", files={"in.csv": CSV_HEADER.encode()}),
    cli("run: empty file", RUN, 1, "error FC003", "holds no events", files={"in.jsonl": b""}),
    cli("run: NaN as a JSON number", RUN, 1, "error FC003", "line 4: not valid JSON", "NaN is not a number",
        files={"in.jsonl": jsonl('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:31:00Z", '
                                 '"instrument": "AAPL", "price": NaN}')}),
    cli("run: Infinity as a string", RUN, 1, "error FC003", "line 4:", "'Infinity' is not a finite number",
        files={"in.jsonl": jsonl('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:31:00Z", '
                                 '"instrument": "AAPL", "price": "Infinity"}')}),
    cli("run: negative quantity", RUN, 1, "error FC003", "line 4:", "quantity must be positive, got -5",
        files={"in.jsonl": jsonl('{"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:31:00Z", '
                                 '"strategy": "s", "instrument": "AAPL", "side": "buy", "quantity": "-5"}')}),
    cli("run: zero deposit", RUN, 1, "error FC003", "line 2:", "amount must be positive, got 0",
        files={"in.jsonl": jsonl().replace(b'"amount": "1000"', b'"amount": 0')}),
    cli("run: amount with a huge exponent", RUN, 1, "error FC003", "line 2:", "out of range",
        files={"in.jsonl": jsonl().replace(b'"amount": "1000"', b'"amount": 1e999999999')}),
    cli("run: \\u0000 in a field", RUN, 1, "error FC003", "line 3:", "NUL character",
        files={"in.jsonl": jsonl().replace(b'"AAPL"', b'"AA\\u0000PL"')}),
    cli("run: wrong JSON type", RUN, 1, "error FC003", "line 1:", "base_currency",
        files={"in.jsonl": jsonl().replace(b'"base_currency": "USD"', b'"base_currency": ["USD"]')}),
    cli("run: unknown instrument in the existing portfolio", ("run", "in.jsonl", "--portfolio", PORTFOLIO_ID), 1,
        "error FC003", "line 1:", "unknown instrument 'TSLA'",
        files={"in.jsonl": b'{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:31:00Z", '
                           b'"instrument": "TSLA", "price": "250"}\n'}),
    cli("run: a portfolio whose history does not decode", ("run", "in.jsonl", "--portfolio", "legacy"), 1,
        "error FC006", str(LEGACY_ID), "LegacyPositionImported",
        files={"in.jsonl": b'{"type": "CashDeposited", "occurred_at": "2026-11-24T14:31:00Z", '
                           b'"currency": "USD", "amount": "5"}\n'}),
    cli("run: empty portfolio id", ("run", "in.jsonl", "--portfolio", ""), 1, "error FC003", "portfolio id",
        files={"in.jsonl": jsonl()}),
    cli("run: missing risk config", (*RUN, "--risk-config", "absent.json"), 1, "error FC003",
        "cannot read risk config absent.json", files={"in.jsonl": jsonl()}),
    cli("run: missing file", ("run", "absent.jsonl", "--portfolio", "new"), 1, "error FC003",
        "cannot read absent.jsonl"),
    cli("show: empty stream name", ("show", ""), 1, "error FC003", "stream must be a non-empty text"),
    cli("show: 513-character stream name", ("show", "s" * 513), 1, "error FC003", "513 characters long"),
    cli("show: --from 0", ("show", ACCOUNT, "--from", "0"), 2, "usage:", "--from", "must be at least 1"),
    cli("show: --limit beyond integer", ("show", ACCOUNT, "--limit", str(2 ** 40)), 1, "error FC003",
        "max_count must be within the 32-bit integer range"),
    cli("show: --from as an injection", ("show", ACCOUNT, "--from", "1; DELETE FROM finam.events"), 2, "usage:",
        "--from"),
    cli("replay: an event no class decodes", ("replay", LEGACY), 1, "error FC006", str(LEGACY_ID),
        "unknown event type 'LegacyPositionImported'"),
    cli("replay: empty stream name", ("replay", ""), 1, "error FC003", "stream must be a non-empty text"),
    cli("migrate: --rollback -1", ("migrate", "--rollback", "-1"), 2, "usage:", "--rollback", "must be at least 1"),
    cli("migrate: --rollback 0", ("migrate", "--rollback", "0"), 2, "usage:", "must be at least 1"),
    cli("migrate: --rollback abc", ("migrate", "--rollback", "abc"), 2, "usage:", "--rollback"),
    cli("migrate: unknown option", ("migrate", "--drop-everything"), 2, "usage:", "unrecognized arguments"),
]


@pytest.mark.parametrize("args, files, status, fragments", CLI_CASES)
def test_cli_refuses(seeded, dsn, tmp_path, args, files, status, fragments):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    migrations_before = seeded.db.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0]
    result = run_finam(*args, dsn=dsn, cwd=tmp_path)
    seeded.assert_unchanged("CLI")
    assert seeded.db.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0] == migrations_before
    assert result.returncode == status, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in stderr:\n{result.stderr}"
    if status == 1:
        assert any(line.startswith("error FC") for line in result.stderr.splitlines()), result.stderr


# --------------------------------------------------------------------------- the catalogue itself

def test_the_catalogue_covers_each_layer_and_kind():
    """At least 20 SQL, 15 Python and 8 CLI cases, every FC code the API documents, and the kinds of
    input the issue lists."""
    counts = Counter({"SQL": len(SQL_CASES), "Python": len(PY_CASES), "CLI": len(CLI_CASES)})
    assert counts["SQL"] >= 20 and counts["Python"] >= 15 and counts["CLI"] >= 8 and sum(counts.values()) >= 60
    codes = {c.values[2] for c in SQL_CASES} | {c.values[2] for c in PY_CASES}
    assert {"FC001", "FC002", "FC003", "FC005", "FC006", "FC007"} <= codes
    names = " ".join(c.id for c in SQL_CASES + PY_CASES + CLI_CASES).lower()
    for kind in ("not a uuid", "empty stream", "513-character", "null payload", "20 mb", "nan", "infinity",
                 "\\u0000", "negative", "zero", "unknown instrument", "expected_version", "append_batch",
                 "injection", "cut off"):
        assert kind in names, kind


def test_injection_strings_as_names_are_stored_as_plain_text(db):
    """Where a hostile string *is* a valid name, it is data: stored verbatim, nothing else happens."""
    hostile = ["x'); DROP TABLE finam.events; --", "'; DELETE FROM finam.snapshots WHERE ''='",
               "$$; TRUNCATE finam.events; $$", "Robert'); DROP TABLE students;--"]
    for name in hostile:
        db.execute("SELECT * FROM finam.append_event(%s, gen_random_uuid(), %s, '{}')", (name, name))
        db.execute("SELECT finam.register_listener(%s, '1 minute')", (name,))
    stored = [row[0] for row in db.execute("SELECT stream FROM finam.events ORDER BY position")]
    assert stored == hostile
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == len(hostile)
    assert [db.execute("SELECT finam.stream_version(%s)", (name,)).fetchone()[0] for name in hostile] == [1] * 4
