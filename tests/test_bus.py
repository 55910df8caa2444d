"""EventBus: append first, handlers after the commit, durable checkpoints, exactly-once effects."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from uuid import uuid4

import psycopg
import pytest

from finam_thin import NewEvent, WrongExpectedVersion
from finam_thin.bus import Append, EventBus
from finam_thin.events import TRADING_EVENTS, CashDeposited, MarkPriceUpdated, StrategySignalEvent
from finam_thin.postgres import PostgresCheckpointStore, PostgresEventStore
from finam_thin.repository import PortfolioRepository, SnapshotEveryN

from pipeline import T0, inputs, order_desk, venue


def deposit(amount: str = "10") -> CashDeposited:
    return CashDeposited(occurred_at=T0, currency="USD", amount=Decimal(amount))


@pytest.fixture
def checkpoints(pool) -> PostgresCheckpointStore:
    return PostgresCheckpointStore(pool)


@pytest.fixture
def bus(store, checkpoints) -> EventBus:
    return EventBus(store, checkpoints)


def types_in(store, stream: str) -> list[str]:
    return [e.type for e in store.read_stream(stream)]


def test_handlers_see_an_event_only_after_its_commit(bus, store, dsn):
    observed = []

    def handler(recorded):
        # a separate connection sees the event: it was committed before the handler ran
        with psycopg.connect(dsn, autocommit=True) as other:
            count = other.execute("SELECT count(*) FROM finam.events WHERE id = %s",
                                  (recorded.event.event_id,)).fetchone()[0]
        observed.append((recorded.event.event_id, count))

    bus.subscribe("observer", handler)
    event = deposit()
    published = bus.publish("portfolio-1", event)
    assert published.appended[0].version == 1 and not published.appended[0].duplicate
    assert published.dispatch.ok and published.dispatch.handled == {"observer": 1}
    assert observed == [(event.event_id, 1)]


def test_a_refused_append_runs_no_handler_and_writes_nothing(bus, store, db):
    calls = []
    bus.subscribe("observer", calls.append)
    bus.publish("portfolio-1", deposit())
    with pytest.raises(WrongExpectedVersion):
        bus.publish("portfolio-1", [deposit(), deposit()], expected_version=0)
    assert len(calls) == 1 and store.stream_version("portfolio-1") == 1


def test_handlers_run_in_registration_order_for_each_event(bus):
    calls = []
    bus.subscribe("first", lambda r: calls.append(("first", r.version)))
    bus.subscribe("second", lambda r: calls.append(("second", r.version)))
    bus.publish("portfolio-1", [deposit("1"), deposit("2")])
    assert calls.index(("first", 1)) < calls.index(("second", 1))
    assert calls.index(("first", 2)) < calls.index(("second", 2))
    assert sorted(calls) == [("first", 1), ("first", 2), ("second", 1), ("second", 2)]


def test_handler_output_is_appended_with_its_checkpoint_and_handled_in_turn(bus, store, checkpoints):
    seen = []
    bus.subscribe("order-desk", order_desk)
    bus.subscribe("venue", venue)
    bus.subscribe("audit", lambda r: seen.append(r.event.type_name))
    events = inputs(7)  # opened, deposit, fx rate, 3 instruments, a signal
    signal = next(e for e in events if isinstance(e, StrategySignalEvent))
    bus.publish("portfolio-1", events)
    assert types_in(store, "portfolio-1") == [e.type_name for e in events] + [
        "OrderRequested", "OrderSubmitted", "OrderAccepted", "OrderPartiallyFilled", "OrderFilled"]
    order = TRADING_EVENTS.decode(store.read_stream("portfolio-1", from_version=8, max_count=1)[0]).event
    assert order.causation_id == signal.event_id and order.correlation_id == signal.event_id
    # every handler saw every event, the outputs included, exactly once
    assert seen == types_in(store, "portfolio-1")
    last = store.read_all()[-1].position
    assert {name: checkpoints.load(name) for name in bus.handler_names} == dict.fromkeys(bus.handler_names, last)
    # the resulting portfolio folds: the order was filled in two parts
    state = PortfolioRepository(store, None).load("portfolio-1", use_snapshot=False)
    assert state.positions[signal.instrument].quantity == signal.quantity * signal.side.sign
    assert not state.open_orders


def test_a_failing_handler_keeps_the_commit_is_reported_and_retried_on_catch_up(bus, store, checkpoints):
    broken = {"on": True}
    handled, others = [], []

    def fragile(recorded):
        if broken["on"] and recorded.version == 2:
            raise RuntimeError("projection database is down")
        handled.append(recorded.version)

    bus.subscribe("fragile", fragile)
    bus.subscribe("other", lambda r: others.append(r.version))
    report = bus.publish("portfolio-1", [deposit("1"), deposit("2"), deposit("3")]).dispatch
    assert store.stream_version("portfolio-1") == 3  # the commit stands
    assert [(f.handler, f.position, str(f.error)) for f in report.failures] == [
        ("fragile", store.read_stream("portfolio-1")[1].position, "projection database is down")]
    assert not report.ok
    assert handled == [1] and others == [1, 2, 3]  # the other handler is not held back
    assert checkpoints.load("fragile") == store.read_stream("portfolio-1")[0].position

    assert bus.catch_up().failures  # still failing: retried, still stopped before version 2
    assert handled == [1]
    broken["on"] = False
    report = bus.catch_up()
    assert report.ok and report.handled == {"fragile": 2}
    assert handled == [1, 2, 3] and others == [1, 2, 3]
    assert checkpoints.load("fragile") == checkpoints.load("other") == store.read_stream("portfolio-1")[2].position


def test_an_undecodable_event_stops_the_handler_until_someone_decides(bus, store, checkpoints, db):
    handled = []
    bus.subscribe("projection", lambda r: handled.append(r.version))
    store.append("portfolio-1", TRADING_EVENTS.encode(deposit("1")))
    poison = uuid4()
    store.append("portfolio-1", NewEvent(poison, "PositionTeleported", {"to": "mars"}))
    report = bus.publish("portfolio-1", deposit("3")).dispatch
    (failure,) = report.failures
    assert failure.event_id == poison and "PositionTeleported" in str(failure.error)
    assert handled == [1]  # never skipped silently: version 3 waits behind the poison event
    # a DBA skips it deliberately through the SQL API
    rows = store.read_stream("portfolio-1")
    db.execute("SELECT finam.advance_checkpoint('projection', %s, %s)", (rows[0].position, rows[1].position))
    assert bus.catch_up().ok and handled == [1, 3]


def test_catch_up_after_a_restart_handles_what_was_committed_exactly_once(store, checkpoints, pool):
    store.append("portfolio-1", [TRADING_EVENTS.encode(e) for e in inputs(10)])  # committed while "down"
    outputs_before = len(store.read_stream("portfolio-1"))

    def fresh_bus():
        restarted = EventBus(PostgresEventStore(pool), PostgresCheckpointStore(pool))
        restarted.subscribe("order-desk", order_desk)
        restarted.subscribe("venue", venue)
        return restarted

    first = fresh_bus().catch_up()
    assert first.ok and first.handled["order-desk"] > outputs_before
    after_first = types_in(store, "portfolio-1")
    signals = after_first.count("StrategySignalEvent")
    assert signals and after_first.count("OrderRequested") == signals == after_first.count("OrderFilled")
    second = fresh_bus().catch_up()
    assert second.ok and second.handled == {}
    assert types_in(store, "portfolio-1") == after_first


def test_two_workers_with_one_handler_name_write_each_output_once(store, pool):
    store.append("portfolio-1", [TRADING_EVENTS.encode(e) for e in inputs(60)])
    calls = []

    def worker():
        bus = EventBus(PostgresEventStore(pool), PostgresCheckpointStore(pool), page_size=7)
        bus.subscribe("order-desk", lambda r: calls.append(r.event.event_id) or order_desk(r))
        for _ in range(3):
            assert bus.catch_up().ok

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    types = types_in(store, "portfolio-1")
    assert types.count("OrderRequested") == types.count("StrategySignalEvent") > 0
    ids = [e.id for e in store.read_stream("portfolio-1")]
    assert len(ids) == len(set(ids))
    # a handler may be called again for an event whose checkpoint race it lost, but its effect is written once
    assert set(calls) >= {e.id for e in store.read_stream("portfolio-1")}


def test_output_that_loses_a_version_race_is_recomputed_and_written_once(bus, store, checkpoints):
    attempts = []

    def guarded(recorded):
        if not isinstance(recorded.event, MarkPriceUpdated):
            return None
        expected = store.stream_version("audit-1")
        if not attempts:  # simulate another writer slipping in between the read and the append
            store.append("audit-1", TRADING_EVENTS.encode(deposit("99")))
        attempts.append(expected)
        return Append("audit-1", [CashDeposited.derived_from(recorded.event, "audit", currency="USD",
                                                             amount=Decimal(1))], expected_version=expected)

    bus.subscribe("guarded", guarded)
    report = bus.publish("portfolio-1", MarkPriceUpdated(occurred_at=T0, instrument="AAPL",
                                                         price=Decimal(1))).dispatch
    assert report.ok and attempts == [0, 1]
    assert [e.type for e in store.read_stream("audit-1")] == ["CashDeposited", "CashDeposited"]
    assert checkpoints.load("guarded") == store.read_all()[-1].position  # past the mark and the audit events


def test_a_publish_from_inside_a_handler_only_appends_and_the_dispatch_picks_it_up(bus, store):
    seen = []

    def chatty(recorded):
        seen.append(recorded.stream)
        if recorded.stream == "portfolio-1":
            bus.publish("notes-1", deposit("5"))

    bus.subscribe("chatty", chatty)
    report = bus.publish("portfolio-1", deposit()).dispatch
    assert report.ok and seen == ["portfolio-1", "notes-1"]


def test_a_category_handler_sees_only_its_streams(bus):
    seen = []
    bus.subscribe("portfolios", lambda r: seen.append(r.stream), category="portfolio")
    bus.publish("portfolio-1", deposit())
    bus.publish("ledger-1", deposit())
    bus.publish("portfolio-2", deposit())
    assert seen == ["portfolio-1", "portfolio-2"]


def test_publish_waits_while_an_older_transaction_hides_its_event(store, checkpoints, dsn):
    seen = []
    bus = EventBus(store, checkpoints, visibility_timeout=0.3)
    bus.subscribe("observer", lambda r: seen.append(r.version))
    with psycopg.connect(dsn) as blocker:  # an open write transaction started before the publish
        blocker.execute("SELECT pg_current_xact_id()")
        report = bus.publish("portfolio-1", deposit()).dispatch
        assert report.pending and seen == []  # committed, but read_all may not pass it yet
        # released while a publish waits: the handlers run within the same publish
        threading.Timer(0.5, blocker.rollback).start()
        slow = EventBus(store, checkpoints, visibility_timeout=10)
        slow.subscribe("observer", lambda r: seen.append(r.version))
        started = time.monotonic()
        report = slow.publish("portfolio-1", deposit()).dispatch
    assert report.ok and seen == [1, 2] and time.monotonic() - started >= 0.4


def test_snapshots_are_taken_every_n_events_after_the_commit(bus, store, snapshot_store):
    repository = PortfolioRepository(store, snapshot_store)
    bus.subscribe("order-desk", order_desk)
    bus.subscribe("venue", venue)
    bus.subscribe("snapshots", SnapshotEveryN(repository, every=10), category="portfolio")
    for event in inputs(20):
        bus.publish("portfolio-9", event)
    head = store.stream_version("portfolio-9")
    snapshot = snapshot_store.load("portfolio-9")
    assert snapshot is not None and snapshot.version == head // 10 * 10
    at_snapshot = repository.load("portfolio-9", use_snapshot=False, version=snapshot.version)
    assert at_snapshot.version == snapshot.version and at_snapshot.to_snapshot() == snapshot.state
    full = repository.load("portfolio-9", use_snapshot=False)
    assert repository.load("portfolio-9").state_hash() == full.state_hash() and full.version == head


def listeners(pool) -> int:
    with pool.connection() as connection:
        return connection.execute("SELECT count(*) FROM finam.listeners").fetchone()[0]


def test_run_follows_other_writers_woken_by_notify(store, checkpoints, pool):
    seen = threading.Event()
    follower = EventBus(PostgresEventStore(pool), PostgresCheckpointStore(pool))
    follower.subscribe("follower", lambda r: seen.set() if r.stream == "portfolio-late" else None)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,), kwargs={"poll_interval": 30.0})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not listeners(pool) and time.monotonic() < deadline:  # wait until it listens
            time.sleep(0.05)
        started = time.monotonic()
        store.append("portfolio-late", TRADING_EVENTS.encode(deposit()))
        assert seen.wait(10), "the follower never handled the event"
        assert time.monotonic() - started < 5, "woken by the poll, not by NOTIFY"
    finally:
        stop.set()
        store.append("portfolio-late", TRADING_EVENTS.encode(deposit()))  # wake it so it sees stop
        thread.join(20)
    assert not thread.is_alive()



def test_a_stream_handler_passes_over_other_streams_without_decoding_them(bus, store):
    seen = []
    store.append("portfolio-b", NewEvent(uuid4(), "PositionTeleported", {"to": "mars"}))  # not decodable
    bus.subscribe("only-a", lambda r: seen.append((r.stream, r.version)), stream="portfolio-a")
    report = bus.publish("portfolio-a", [deposit("1"), deposit("2")]).dispatch
    bus.publish("portfolio-b", deposit("3"))
    assert report.ok and seen == [("portfolio-a", 1), ("portfolio-a", 2)]


def test_a_handler_starting_from_the_end_sees_only_what_is_committed_after_its_first_dispatch(bus, store,
                                                                                              checkpoints):
    store.append("portfolio-old", [TRADING_EVENTS.encode(deposit(str(n))) for n in (1, 2, 3)])
    seen = []
    bus.subscribe("newcomer", lambda r: seen.append((r.stream, r.version)), category="portfolio", from_end=True)
    assert bus.catch_up().handled == {}
    assert checkpoints.load("newcomer") == store.read_stream("portfolio-old")[-1].position
    bus.publish("portfolio-new", deposit())
    assert seen == [("portfolio-new", 1)]
    # once it has a checkpoint, from_end changes nothing: a restarted bus resumes there
    again = EventBus(store, checkpoints)
    again.subscribe("newcomer", lambda r: seen.append(("again", r.version)), category="portfolio", from_end=True)
    store.append("portfolio-new", TRADING_EVENTS.encode(deposit()))
    assert again.catch_up().handled == {"newcomer": 1} and seen[-1] == ("again", 2)
