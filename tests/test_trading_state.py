"""The risk state the fold keeps: trading state, trading day and baseline, clusters, recent orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from finam_thin.events import (
    ClusterMapPublished,
    InstrumentRegistered,
    OrderRequested,
    PortfolioOpened,
    Side,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
)
from finam_thin.portfolio import RECENT_ORDERS_KEPT, InvalidTransition, PortfolioState

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def opened() -> PortfolioState:
    return PortfolioState.fold([
        PortfolioOpened(occurred_at=T0, base_currency="USD"),
        InstrumentRegistered(occurred_at=T0, instrument="ES", asset_class="future", currency="USD",
                             multiplier=Decimal(50), lot_size=Decimal(1)),
    ])


def day(d: int, equity: str) -> TradingDayStarted:
    return TradingDayStarted(occurred_at=T0 + timedelta(days=d), trading_day=date(2026, 11, 24) + timedelta(days=d),
                             baseline_equity=Decimal(equity))


def test_a_new_day_sets_the_baseline_and_ends_the_reducing_latch_but_not_a_halt():
    state = opened()
    assert state.trading_state is TradingState.ACTIVE and state.baseline_equity is None
    state.apply(day(0, "100000"))
    state.apply(TradingStateChanged(occurred_at=T0, state=TradingState.REDUCING, reason="DAILY_LOSS_CAP"))
    assert state.trading_state is TradingState.REDUCING
    state.apply(day(1, "97000.5"))
    assert (state.trading_state, state.trading_day, state.baseline_equity) == (
        TradingState.ACTIVE, date(2026, 11, 25), Decimal("97000.5"))
    state.apply(TradingStateChanged(occurred_at=T0, state=TradingState.HALTED, reason="KILL_SWITCH"))
    state.apply(day(2, "97000.5"))
    assert state.trading_state is TradingState.HALTED


def test_trading_days_only_move_forward():
    state = opened().apply(day(1, "1"))
    before = state.state_hash()
    for stale in (day(1, "2"), day(0, "2")):
        with pytest.raises(InvalidTransition, match="does not follow"):
            state.apply(stale)
    assert state.state_hash() == before


def test_cluster_maps_replace_each_other_in_version_order():
    state = opened()
    state.apply(ClusterMapPublished(occurred_at=T0, map_version=1, instruments=("ES", "NQ"), clusters=("us", "us")))
    state.apply(ClusterMapPublished(occurred_at=T0, map_version=3, instruments=("ES",), clusters=("equity-beta",)))
    assert state.cluster_map_version == 3 and state.clusters == {"ES": "equity-beta"}
    with pytest.raises(InvalidTransition, match="does not follow"):
        state.apply(ClusterMapPublished(occurred_at=T0, map_version=3, instruments=(), clusters=()))


def test_recent_order_times_are_kept_per_instrument_and_bounded():
    state = opened()
    for i in range(RECENT_ORDERS_KEPT + 5):
        state.apply(OrderRequested(occurred_at=T0 + timedelta(seconds=i), order_id=f"O-{i}", instrument="ES",
                                   side=Side.BUY, quantity=Decimal(1), reference_price=Decimal("5000.25"),
                                   emergency_exit=i == 0))
    times = state.recent_orders["ES"]
    assert len(times) == RECENT_ORDERS_KEPT and times[-1] == T0 + timedelta(seconds=RECENT_ORDERS_KEPT + 4)
    assert times[0] == T0 + timedelta(seconds=5)
    assert state.open_orders["O-0"].emergency_exit and state.open_orders["O-1"].reference_price == Decimal("5000.25")
    assert state.instruments["ES"].lot_size == Decimal(1)


def test_the_risk_state_survives_a_snapshot_and_changes_the_hash():
    state = opened()
    plain = state.state_hash()
    state.apply(day(0, "100000"))
    state.apply(TradingStateChanged(occurred_at=T0, state=TradingState.HALTED, reason="KILL_SWITCH"))
    state.apply(ClusterMapPublished(occurred_at=T0, map_version=1, instruments=("ES",), clusters=("c1",)))
    state.apply(OrderRequested(occurred_at=T0, order_id="O-1", instrument="ES", side=Side.SELL, quantity=Decimal(2)))
    assert state.state_hash() != plain
    restored = PortfolioState.from_snapshot(state.to_snapshot())
    assert restored == state and restored.state_hash() == state.state_hash()
    assert (restored.trading_state, restored.trading_day, restored.clusters, restored.recent_orders) == (
        TradingState.HALTED, date(2026, 11, 24), {"ES": "c1"}, {"ES": (T0,)})
