"""TradingEngine end to end on a real store: signal → risk decision → paper execution, as events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from finam_thin.bus import EventBus
from finam_thin.events import (
    TRADING_EVENTS,
    CashDeposited,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    SignalDenied,
    StrategySignalEvent,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
)
from finam_thin.postgres import PostgresCheckpointStore
from finam_thin.repository import PortfolioRepository
from finam_thin.risk import PreTradeRiskEngine, RiskConfig
from finam_thin.trading import PaperExecution, TradingEngine

DAY1 = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
STREAM = "portfolio-trading"

CONFIG = RiskConfig.from_mapping({
    "version": "test-1",
    "risk_fraction": "0.01",
    "max_order_quantity": "1000",
    "max_instrument_exposure": "0.5",
    "daily_loss_cap": "0.02",
})


def trading_bus(store, snapshot_store, pool, execution) -> tuple[EventBus, PortfolioRepository]:
    """A bus with a TradingEngine (CONFIG's limits, ``execution`` as the venue) subscribed."""
    repository = PortfolioRepository(store, snapshot_store)
    bus = EventBus(store, PostgresCheckpointStore(pool))
    TradingEngine(repository, PreTradeRiskEngine(CONFIG), execution).subscribe(bus)
    return bus, repository


def opening(lot_size: Decimal = Decimal(1)) -> list:
    """A USD portfolio with 100,000 in cash and AAPL registered."""
    return [PortfolioOpened(occurred_at=DAY1, base_currency="USD"),
            CashDeposited(occurred_at=DAY1, currency="USD", amount=Decimal("100000")),
            InstrumentRegistered(occurred_at=DAY1, instrument="AAPL", asset_class="equity", currency="USD",
                                 lot_size=lot_size)]


@pytest.fixture
def engine(store, snapshot_store, pool):
    bus, repository = trading_bus(store, snapshot_store, pool,
                                  PaperExecution(slippage_bps=Decimal(10), fee_bps=Decimal(5)))
    bus.publish(STREAM, opening(), expected_version=0)
    return bus, repository


def mark(price: str, at: datetime = DAY1) -> MarkPriceUpdated:
    return MarkPriceUpdated(occurred_at=at, instrument="AAPL", price=Decimal(price))


def signal(side: Side = Side.BUY, at: datetime = DAY1, **fields) -> StrategySignalEvent:
    return StrategySignalEvent(occurred_at=at, strategy="test", instrument="AAPL", side=side, **fields)


def new_types(store, after: int) -> list[str]:
    return [e.type for e in store.read_stream(STREAM, from_version=after + 1)]


def last_event(store):
    """The stream's newest event, decoded."""
    return TRADING_EVENTS.decode(store.read_stream_backward(STREAM, max_count=1)[0]).event


def test_an_approved_signal_becomes_an_order_and_paper_fills(engine, store):
    bus, repository = engine
    published = bus.publish(STREAM, mark("200"))
    assert published.dispatch.ok
    assert new_types(store, 3) == ["MarkPriceUpdated", "TradingDayStarted"]
    head = store.stream_version(STREAM)
    report = bus.publish(STREAM, signal(quantity=Decimal(10))).dispatch
    assert report.ok, report.failures
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderSubmitted",
                                      "OrderAccepted", "OrderFilled"]
    state = repository.load(STREAM)
    # 10 bps slippage on a buy at 200: 200.2; fee 5 bps of 10 x 200.2 = 2002 -> 1.001 -> 1.00
    assert state.positions["AAPL"].quantity == 10 and state.positions["AAPL"].average_price == Decimal("200.2")
    assert state.cash["USD"] == Decimal("100000") - Decimal("2002") - Decimal("1.00")
    assert state.fees == {"USD": Decimal("1.00")}
    submitted = TRADING_EVENTS.decode(store.read_stream(STREAM, from_version=head + 3, max_count=1)[0]).event
    assert isinstance(submitted, OrderSubmitted) and submitted.risk_config_hash == CONFIG.config_hash


def test_a_denied_order_is_recorded_with_reasons_and_the_config_hash(engine, store):
    bus, repository = engine
    bus.publish(STREAM, mark("200"))
    head = store.stream_version(STREAM)
    assert bus.publish(STREAM, signal(quantity=Decimal(1001))).dispatch.ok  # over max_order_quantity
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderDenied"]
    denied = last_event(store)
    assert isinstance(denied, OrderDenied) and "MAX_ORDER_QUANTITY" in denied.reason_codes
    assert denied.risk_config_hash == CONFIG.config_hash
    state = repository.load(STREAM)
    assert not state.open_orders and "AAPL" not in state.positions


def test_a_stop_sized_signal_risks_the_configured_fraction(engine, store):
    bus, repository = engine
    bus.publish(STREAM, mark("200"))
    # equity 100000 x 1% = 1000 at risk; stop distance |200 - 190| = 10 -> 100 shares
    assert bus.publish(STREAM, signal(reference_price=Decimal("200"), stop_price=Decimal("190"))).dispatch.ok
    assert repository.load(STREAM).positions["AAPL"].quantity == 100


def test_a_signal_without_any_price_is_denied_before_it_becomes_an_order(engine, store):
    bus, repository = engine
    head = store.stream_version(STREAM)
    assert bus.publish(STREAM, signal(stop_price=Decimal("190"))).dispatch.ok  # no mark, no reference price
    # the day's first event also records the day's baseline
    assert new_types(store, head) == ["StrategySignalEvent", "TradingDayStarted", "SignalDenied"]
    denied = last_event(store)
    assert isinstance(denied, SignalDenied) and "NO_PRICE" in denied.reason_codes


def test_the_daily_loss_cap_latches_reducing_until_the_next_day(engine, store):
    bus, repository = engine
    bus.publish(STREAM, mark("200"))
    bus.publish(STREAM, signal(quantity=Decimal(200)))          # long 200 @ 200.2
    bus.publish(STREAM, mark("185"))                             # -200 x 15.2 = -3040: more than 2% of 100000
    head = store.stream_version(STREAM)
    bus.publish(STREAM, signal(quantity=Decimal(10)))            # adds exposure: denied, state -> REDUCING
    assert new_types(store, head) == ["StrategySignalEvent", "TradingStateChanged", "OrderRequested", "OrderDenied"]
    denied = last_event(store)
    assert "DAILY_LOSS_CAP" in denied.reason_codes
    assert repository.load(STREAM).trading_state is TradingState.REDUCING
    head = store.stream_version(STREAM)
    bus.publish(STREAM, signal(Side.SELL, quantity=Decimal(50)))  # reduces: allowed while REDUCING
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderSubmitted", "OrderAccepted",
                                      "OrderFilled"]
    day2 = DAY1 + timedelta(days=1)
    bus.publish(STREAM, mark("186", at=day2))
    state = repository.load(STREAM)
    assert state.trading_day == date(2026, 11, 25) and state.trading_state is TradingState.ACTIVE
    started = [TRADING_EVENTS.decode(e).event for e in store.read_stream(STREAM) if e.type == "TradingDayStarted"]
    assert [s.trading_day for s in started] == [date(2026, 11, 24), date(2026, 11, 25)]
    assert all(isinstance(s, TradingDayStarted) for s in started)
    changes = [TRADING_EVENTS.decode(e).event for e in store.read_stream(STREAM) if e.type == "TradingStateChanged"]
    assert [(c.state, c.reason) for c in changes] == [(TradingState.REDUCING, "DAILY_LOSS_CAP")]
    assert isinstance(changes[0], TradingStateChanged)


def test_partial_fills_in_lots(store, snapshot_store, pool):
    bus, repository = trading_bus(store, snapshot_store, pool, PaperExecution(partial_fill_ratio=Decimal("0.3")))
    bus.publish(STREAM, [*opening(lot_size=Decimal(10)), mark("100")])
    assert bus.publish(STREAM, signal(quantity=Decimal(50))).dispatch.ok
    fills = [TRADING_EVENTS.decode(e).event for e in store.read_stream(STREAM) if "Filled" in e.type]
    # 30% of 50 = 15 -> rounded down to the lot of 10; then the remaining 40
    assert [(type(f).__name__, f.quantity) for f in fills] == [("OrderPartiallyFilled", 10), ("OrderFilled", 40)]


def test_rerunning_the_engine_on_a_handled_signal_writes_nothing_new(engine, store, pool, snapshot_store):
    bus, repository = engine
    bus.publish(STREAM, mark("200"))
    bus.publish(STREAM, signal(quantity=Decimal(5)))
    before = [(e.id, e.version) for e in store.read_stream(STREAM)]
    # a second engine process that lost its memory: nothing left to do, and re-deciding is a no-op
    again, _ = trading_bus(store, snapshot_store, pool, PaperExecution(slippage_bps=Decimal(10), fee_bps=Decimal(5)))
    assert again.catch_up().handled == {}
    assert [(e.id, e.version) for e in store.read_stream(STREAM)] == before


class WorkingVenue:
    """An ExecutionAdapter whose venue accepts every order and works it: nothing fills yet."""

    def execute(self, order_id, order, submitted, state):
        return [OrderAccepted.derived_from(submitted, "accept", order_id=order_id)]


def test_halted_denies_new_orders_but_lets_cancels_and_flagged_emergency_exits_through(store, snapshot_store, pool):
    bus, repository = trading_bus(store, snapshot_store, pool, WorkingVenue())
    bus.publish(STREAM, [*opening(), mark("200")])
    assert bus.publish(STREAM, signal(quantity=Decimal(10), limit_price=Decimal("199"))).dispatch.ok
    (filled_id,) = repository.load(STREAM).open_orders
    bus.publish(STREAM, OrderFilled(occurred_at=DAY1, order_id=filled_id, fill_id="F-1", quantity=Decimal(10),
                                    price=Decimal("199")))  # the venue reports the fill later
    assert bus.publish(STREAM, signal(quantity=Decimal(10), limit_price=Decimal("198"))).dispatch.ok
    working = repository.load(STREAM).open_orders
    assert [o.status for o in working.values()] == ["accepted"]
    (order_id,) = working

    bus.publish(STREAM, TradingStateChanged(occurred_at=DAY1, state=TradingState.HALTED, reason="MANUAL_HALT"))
    head = store.stream_version(STREAM)
    assert bus.publish(STREAM, signal(quantity=Decimal(5))).dispatch.ok  # a new order: denied
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderDenied"]
    denied = last_event(store)
    assert denied.reason_codes == ("HALTED",)
    head = store.stream_version(STREAM)
    bus.publish(STREAM, signal(Side.SELL, quantity=Decimal(5)))  # reduces, but is not flagged: denied
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderDenied"]

    head = store.stream_version(STREAM)
    assert bus.publish(STREAM, OrderCancelled(occurred_at=DAY1, order_id=order_id, reason="MANUAL_HALT")).dispatch.ok
    assert new_types(store, head) == ["OrderCancelled"]  # a cancel is never risk-checked: it reduces risk
    state = repository.load(STREAM)
    assert not state.open_orders and state.trading_state is TradingState.HALTED

    head = store.stream_version(STREAM)  # a flagged emergency exit that reduces the position passes
    assert bus.publish(STREAM, signal(Side.SELL, quantity=Decimal(5), emergency_exit=True)).dispatch.ok
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderSubmitted", "OrderAccepted"]
    head = store.stream_version(STREAM)  # one that would go beyond flat (sell 10 more of 10 held, 5 working) does not
    bus.publish(STREAM, signal(Side.SELL, quantity=Decimal(10), emergency_exit=True))
    assert new_types(store, head) == ["StrategySignalEvent", "OrderRequested", "OrderDenied"]
    assert "HALTED" in last_event(store).reason_codes
