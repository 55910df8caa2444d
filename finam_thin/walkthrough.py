"""A short, printed tour of the event store and the engine: the main job until `finam demo` exists.

Each run uses new streams ``walkthrough-N`` and ``portfolio-walkthrough-N``
with ids derived from the stream name, so every step's outcome is the same on
every run and machine.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import NAMESPACE_URL, uuid5

from .bus import Append, EventBus
from .contract import RecordedEvent
from .database import create_pool
from .errors import EventIdConflict, InvalidArgument, WrongExpectedVersion
from .events import (
    CashDeposited,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderFilled,
    OrderRequested,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    StrategySignalEvent,
)
from .persistence import NewEvent, Snapshot
from .postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from .repository import PORTFOLIO_CATEGORY, PortfolioRepository, SnapshotEveryN


def run(dsn: str, say: Callable[[str], None] = print) -> str:
    """Run the walkthrough on a migrated database; return the stream it used."""
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        snapshots = PostgresSnapshotStore(pool)
        with pool.connection() as conn:
            runs = conn.execute("SELECT count(*) FROM finam.streams WHERE category = 'walkthrough'").fetchone()[0]
            schema = conn.execute("SELECT finam.schema_version()").fetchone()[0]
        stream = f"walkthrough-{runs + 1}"

        def event(label: str, type_: str, **payload) -> NewEvent:
            return NewEvent(uuid5(NAMESPACE_URL, f"finam:{stream}/{label}"), type_, payload,
                            {"correlation_id": str(uuid5(NAMESPACE_URL, f"finam:{stream}"))})

        say(f"Finam Core SQL API {schema}; walkthrough on stream {stream!r}")

        deposit = event("deposit", "CashDeposited", currency="USD", amount="100000.00")
        [result] = store.append(stream, deposit, expected_version=0)
        say(f"1. append_event CashDeposited, expected version 0 -> version {result.version}, "
            f"position {result.position}, duplicate={result.duplicate}")

        batch = [event("signal", "StrategySignalEvent", instrument="AAPL", side="BUY", quantity="10",
                       reference_price="189.25"),
                 event("order", "OrderRequested", instrument="AAPL", side="BUY", quantity="10")]
        results = store.append(stream, batch, expected_version=1)
        say("2. append batch of 2, expected version 1 -> versions "
            + ", ".join(str(r.version) for r in results))

        retried = store.append(stream, batch, expected_version=1)
        say("3. same batch again (a retry after a lost reply) -> versions "
            + ", ".join(str(r.version) for r in retried)
            + f", duplicate={all(r.duplicate for r in retried)}, nothing written")

        try:
            store.append(stream, event("late", "OrderCancelled", instrument="AAPL"), expected_version=1)
        except WrongExpectedVersion as error:
            say(f"4. stale writer, expected version 1 -> FC001 {error} "
                f"(actual={error.actual})")

        try:
            store.append(stream, NewEvent(deposit.id, "CashDeposited", {"currency": "USD", "amount": "1"}))
        except EventIdConflict as error:
            say(f"5. reused id with different payload -> FC002 {error}")

        try:
            store.append("", event("bad", "CashDeposited", amount="1"))
        except InvalidArgument as error:
            say(f"6. empty stream name -> FC003 {error}")

        say(f"7. stream_version({stream!r}) -> {store.stream_version(stream)}")
        say("8. read_stream:")
        for stored in store.read_stream(stream):
            say(f"     v{stored.version} pos {stored.position} {stored.type} {stored.payload}")

        saved = snapshots.save(Snapshot(stream, 3, {"cash": {"USD": "100000.00"}, "open_orders": 1}, 1))
        loaded = snapshots.load(stream, 1)
        say(f"9. save_snapshot at version 3 -> stored={saved}; load_snapshot -> version {loaded.version}, "
            f"state {loaded.state}")

        seen = mine = 0
        position = 0
        while page := store.read_all(after_position=position, max_count=500):
            seen += len(page)
            mine += sum(1 for e in page if e.stream == stream)
            position = page[-1].position
        say(f"10. read_all, pages of 500 from position 0 -> {seen} events in the store, {mine} of them in "
            f"{stream!r}; resume after position {position}")
    engine_tour(dsn, f"{PORTFOLIO_CATEGORY}-{stream}", say)
    return stream


def order_desk(recorded: RecordedEvent):
    """Signal -> order request -> filled at the signal's limit price (a toy venue; ids derived from the signal)."""
    signal = recorded.event
    if not isinstance(signal, StrategySignalEvent):
        return None
    order_id = f"O-{signal.event_id}"
    order = OrderRequested.derived_from(signal, "order", order_id=order_id, instrument=signal.instrument,
                                        side=signal.side, quantity=signal.quantity, limit_price=signal.limit_price)
    return Append(recorded.stream, [
        order,
        OrderSubmitted.derived_from(order, "submit", order_id=order_id),
        OrderFilled.derived_from(order, "fill", order_id=order_id, fill_id="F-1", quantity=signal.quantity,
                                 price=signal.limit_price, fee=Decimal("1.00"), fee_currency="USD"),
    ])


def engine_tour(dsn: str, stream: str, say: Callable[[str], None]) -> None:
    """EventBus.publish -> handlers after the commit -> PortfolioState; then a restart rebuilds the same hash."""
    start = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)

    def ids(label: str, minutes: int) -> dict:
        return {"event_id": uuid5(NAMESPACE_URL, f"finam:{stream}/{label}"),
                "occurred_at": start + timedelta(minutes=minutes)}

    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        bus = EventBus(store, PostgresCheckpointStore(pool))
        bus.subscribe("walkthrough-order-desk", order_desk, category=PORTFOLIO_CATEGORY)
        bus.subscribe("walkthrough-snapshots", SnapshotEveryN(repository, every=5), category=PORTFOLIO_CATEGORY)
        bus.catch_up()
        handled: dict[str, int] = {}
        say(f"11. EventBus.publish to {stream!r}: handlers run after each commit")
        reports = [bus.publish(stream, [
            PortfolioOpened(base_currency="USD", **ids("opened", 0)),
            CashDeposited(currency="USD", amount=Decimal("100000.00"), **ids("deposit", 0)),
            InstrumentRegistered(instrument="AAPL", asset_class="equity", currency="USD", **ids("aapl", 0)),
        ], expected_version=0).dispatch]
        for minute, (side, quantity, price) in enumerate(
                [(Side.BUY, "100", "189.25"), (Side.BUY, "50", "190.10"), (Side.SELL, "120", "192.40")], 1):
            reports.append(bus.publish(stream, StrategySignalEvent(
                strategy="walkthrough", instrument="AAPL", side=side, quantity=Decimal(quantity),
                limit_price=Decimal(price), **ids(f"signal-{minute}", minute))).dispatch)
        reports.append(bus.publish(stream, MarkPriceUpdated(instrument="AAPL", price=Decimal("191.00"),
                                                             **ids("mark", 5))).dispatch)
        for report in reports:
            for name, count in report.handled.items():
                handled[name] = handled.get(name, 0) + count
        say(f"    events handled: {handled}; failures: {sum(len(r.failures) for r in reports)}")
        say("    stream: " + ", ".join(e.type for e in store.read_stream(stream)))
        state = repository.load(stream, use_snapshot=False)
        position = state.positions["AAPL"]
        value = state.valuation()
        say(f"12. PortfolioState at version {state.version}: AAPL {position.quantity} @ avg "
            f"{position.average_price.quantize(Decimal('0.0001'))}, realized {position.realized_pnl.quantize(Decimal('0.01'))}, "
            f"cash {value.cash.quantize(Decimal('0.01'))}, fees {value.fees}, equity {value.equity.quantize(Decimal('0.01'))}")
        say(f"    state_hash {state.state_hash()}")
    with create_pool(dsn, max_size=2) as pool:  # a restart: nothing kept in memory
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        snapshot = repository.snapshots.load(stream)
        rebuilt = repository.load(stream)
        say(f"13. restart: snapshot at version {snapshot.version if snapshot else None} + "
            f"{rebuilt.version - (snapshot.version if snapshot else 0)} events -> state_hash {rebuilt.state_hash()}, "
            f"identical: {rebuilt.state_hash() == state.state_hash()}")
