"""PortfolioState fold: hand-computed accounting, valuation, the order state machine, determinism.

Pure domain tests (no database). Every expected figure is computed by hand in
the comment next to its literal, from the rules in finam_thin/portfolio.py's
module docstring; none is produced by the code under test.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from uuid import UUID

import pytest

from finam_thin.contract import DomainEvent, RecordedEvent
from finam_thin.events import (
    CashDeposited,
    CashWithdrawn,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderAccepted,
    OrderCancelled,
    OrderDenied,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    StrategySignalEvent,
)
from finam_thin.portfolio import InvalidTransition, MissingFxRate, PortfolioState, Position

T = datetime(2026, 11, 24, tzinfo=UTC)
D = Decimal
BUY, SELL = Side.BUY, Side.SELL
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- event builders -----------------------------------------------------------------

def opened(base: str = "USD") -> PortfolioOpened:
    return PortfolioOpened(occurred_at=T, base_currency=base)


def instrument(name: str, asset_class: str = "equity", currency: str = "USD", multiplier: int | str = 1):
    return InstrumentRegistered(occurred_at=T, instrument=name, asset_class=asset_class, currency=currency,
                                multiplier=D(multiplier))


def deposit(amount: str, currency: str = "USD") -> CashDeposited:
    return CashDeposited(occurred_at=T, currency=currency, amount=D(amount))


def withdraw(amount: str, currency: str = "USD") -> CashWithdrawn:
    return CashWithdrawn(occurred_at=T, currency=currency, amount=D(amount))


def fx(currency: str, rate: str) -> FxRateUpdated:
    return FxRateUpdated(occurred_at=T, currency=currency, rate=D(rate))


def mark(name: str, price: str) -> MarkPriceUpdated:
    return MarkPriceUpdated(occurred_at=T, instrument=name, price=D(price))


def requested(oid: str, name: str, side: Side, quantity: str, limit: str | None = None) -> OrderRequested:
    return OrderRequested(occurred_at=T, order_id=oid, instrument=name, side=side, quantity=D(quantity),
                          limit_price=None if limit is None else D(limit))


def submitted(oid: str) -> OrderSubmitted:
    return OrderSubmitted(occurred_at=T, order_id=oid)


def accepted(oid: str) -> OrderAccepted:
    return OrderAccepted(occurred_at=T, order_id=oid, venue_order_id=f"V-{oid}")


def partial(oid: str, quantity: str, price: str, fee: str = "0", fee_currency: str | None = None,
            fill_id: str | None = None) -> OrderPartiallyFilled:
    return OrderPartiallyFilled(occurred_at=T, order_id=oid, fill_id=fill_id or f"{oid}-p{quantity}@{price}",
                                quantity=D(quantity), price=D(price), fee=D(fee), fee_currency=fee_currency)


def filled(oid: str, quantity: str, price: str, fee: str = "0", fee_currency: str | None = None,
           fill_id: str | None = None) -> OrderFilled:
    return OrderFilled(occurred_at=T, order_id=oid, fill_id=fill_id or f"{oid}-f{quantity}@{price}",
                       quantity=D(quantity), price=D(price), fee=D(fee), fee_currency=fee_currency)


def working(oid: str, name: str, side: Side, quantity: str) -> list:
    """requested -> submitted -> accepted."""
    return [requested(oid, name, side, quantity), submitted(oid), accepted(oid)]


def trade(oid: str, name: str, side: Side, quantity: str, price: str, fee: str = "0",
          fee_currency: str | None = None) -> list:
    """A whole order filled in one fill."""
    return working(oid, name, side, quantity) + [filled(oid, quantity, price, fee, fee_currency)]


def fold(*groups) -> PortfolioState:
    events = []
    for group in groups:
        events.extend(group if isinstance(group, list) else [group])
    return PortfolioState.fold(events)


def usd_account(*instruments) -> list:
    return [opened("USD"), *instruments, deposit("10000")]


def pos(state: PortfolioState, name: str) -> Position:
    return state.positions[name]


# -- long positions ----------------------------------------------------------------

def test_long_weighted_average_partial_closes_and_flat():
    state = fold(usd_account(instrument("AAPL")))
    for event in trade("o1", "AAPL", BUY, "10", "100"):
        state.apply(event)
    p = pos(state, "AAPL")
    assert (p.quantity, p.average_price, p.realized_pnl, p.last_price) == (D(10), D(100), D(0), D(100))
    assert state.cash == {"USD": D("9000")}  # 10000 - 10*100

    for event in trade("o2", "AAPL", BUY, "30", "120"):
        state.apply(event)
    p = pos(state, "AAPL")
    assert p.quantity == D(40)
    assert p.average_price == D(115)  # (100*10 + 120*30) / 40 = 4600 / 40
    assert p.realized_pnl == 0
    assert state.cash["USD"] == D(5400)  # 9000 - 30*120

    for event in trade("o3", "AAPL", SELL, "15", "130"):
        state.apply(event)
    p = pos(state, "AAPL")
    assert p.quantity == D(25)  # 40 - 15
    assert p.average_price == D(115)  # unchanged by a reduction
    assert p.realized_pnl == D(225)  # 15 * 1 * (130 - 115)
    assert state.cash["USD"] == D(7350)  # 5400 + 15*130

    for event in trade("o4", "AAPL", SELL, "25", "110"):
        state.apply(event)
    p = pos(state, "AAPL")
    assert p.quantity == 0
    assert p.average_price == 0  # a flat position's average is 0
    assert p.realized_pnl == D(100)  # 225 + 25 * (110 - 115) = 225 - 125
    assert p.last_price == D(110)
    assert state.cash["USD"] == D(10100)  # 7350 + 25*110 = 10000 + realized 100
    assert state.open_orders == {}
    assert state.version == 3 + 4 * 4  # opened, instrument, deposit + four orders of four events


def test_long_partial_close_with_fractional_quantities():
    state = fold(usd_account(instrument("BTC", "crypto")),
                 trade("o1", "BTC", BUY, "0.5", "40000"),
                 trade("o2", "BTC", BUY, "0.25", "43000"),
                 trade("o3", "BTC", SELL, "0.3", "45000"))
    p = pos(state, "BTC")
    assert p.quantity == D("0.45")  # 0.75 - 0.3
    assert p.average_price == D(41000)  # (40000*0.5 + 43000*0.25) / 0.75 = (20000 + 10750) / 0.75 = 30750 / 0.75
    assert p.realized_pnl == D(1200)  # 0.3 * (45000 - 41000)
    assert state.cash["USD"] == D(-7250)  # 10000 - 0.5*40000 - 0.25*43000 + 0.3*45000 = 10000 - 20000 - 10750 + 13500


# -- short positions ---------------------------------------------------------------

def test_short_weighted_average_partial_close_and_flat():
    state = fold(usd_account(instrument("TSLA")), trade("o1", "TSLA", SELL, "20", "50"))
    p = pos(state, "TSLA")
    assert (p.quantity, p.average_price) == (D(-20), D(50))
    assert state.cash["USD"] == D(11000)  # 10000 + 20*50 received

    for event in trade("o2", "TSLA", SELL, "20", "60"):
        state.apply(event)
    p = pos(state, "TSLA")
    assert p.quantity == D(-40)
    assert p.average_price == D(55)  # (50*20 + 60*20) / 40 = 2200 / 40
    assert state.cash["USD"] == D(12200)  # 11000 + 20*60

    for event in trade("o3", "TSLA", BUY, "10", "45"):
        state.apply(event)
    p = pos(state, "TSLA")
    assert p.quantity == D(-30)
    assert p.average_price == D(55)
    assert p.realized_pnl == D(100)  # 10 * 1 * (55 - 45): a short gains when the price falls
    assert state.cash["USD"] == D(11750)  # 12200 - 10*45

    for event in trade("o4", "TSLA", BUY, "30", "58"):
        state.apply(event)
    p = pos(state, "TSLA")
    assert p.quantity == 0 and p.average_price == 0
    assert p.realized_pnl == D(10)  # 100 + 30 * (55 - 58) = 100 - 90
    assert state.cash["USD"] == D(10010)  # 11750 - 30*58 = 10000 + realized 10


# -- flips -------------------------------------------------------------------------

def test_flip_long_to_short_and_back():
    state = fold(usd_account(instrument("AAPL")), trade("o1", "AAPL", BUY, "10", "100"))

    for event in trade("o2", "AAPL", SELL, "25", "110"):  # one fill larger than the long
        state.apply(event)
    p = pos(state, "AAPL")
    assert p.realized_pnl == D(100)  # close leg 10 * (110 - 100)
    assert p.quantity == D(-15)  # open leg 25 - 10
    assert p.average_price == D(110)  # open leg at the fill price
    assert state.cash["USD"] == D(11750)  # 10000 - 1000 + 25*110

    for event in trade("o3", "AAPL", BUY, "20", "90"):
        state.apply(event)
    p = pos(state, "AAPL")
    assert p.realized_pnl == D(400)  # 100 + close leg 15 * (110 - 90)
    assert p.quantity == D(5)  # 20 - 15
    assert p.average_price == D(90)
    assert state.cash["USD"] == D(9950)  # 11750 - 20*90

    v = state.valuation()  # valued at the last fill price 90: no unrealized PnL
    assert v.unrealized_pnl == 0
    assert v.equity == D(10400)  # 9950 + 5*90 = 10000 + realized 400
    assert v.realized_pnl == D(400)


def test_flip_with_multiplier_and_partial_fills():
    # an option (multiplier 100): short 2, then a buy of 5 in two fills flips to long 3.
    state = fold(usd_account(instrument("SPX-C", "option", "USD", 100)),
                 trade("o1", "SPX-C", SELL, "2", "12.5"),
                 working("o2", "SPX-C", BUY, "5"),
                 partial("o2", "1", "10"))
    p = pos(state, "SPX-C")
    assert p.quantity == D(-1)
    assert p.realized_pnl == D(250)  # 1 * 100 * (12.5 - 10)
    state.apply(filled("o2", "4", "11"))
    p = pos(state, "SPX-C")
    assert p.realized_pnl == D(400)  # 250 + close leg 1 * 100 * (12.5 - 11)
    assert p.quantity == D(3) and p.average_price == D(11)
    assert state.cash["USD"] == D(7100)  # 10000 + 2*12.5*100 - 1*10*100 - 4*11*100 = 10000 + 2500 - 1000 - 4400
    assert state.valuation().equity == D(10400)  # 7100 + 3*11*100 = 10000 + realized 400


# -- fees ----------------------------------------------------------------------------

def test_fees_are_booked_separately_in_their_currency():
    state = fold(usd_account(instrument("AAPL")),
                 trade("o1", "AAPL", BUY, "10", "100", fee="1.25", fee_currency="USD"),
                 working("o2", "AAPL", SELL, "10"),
                 partial("o2", "4", "105", fee="0.5", fee_currency="USD"),
                 filled("o2", "6", "105", fee="0.75", fee_currency="EUR"))
    p = pos(state, "AAPL")
    assert p.realized_pnl == D(50)  # 10 * (105 - 100): fees excluded
    assert p.quantity == 0
    assert state.cash == {"USD": D("10048.25"),  # 10000 - 1000 - 1.25 + 4*105 - 0.5 + 6*105
                          "EUR": D("-0.75")}  # only the EUR fee
    assert state.fees == {"USD": D("1.75"),  # 1.25 + 0.5
                          "EUR": D("0.75")}

    with pytest.raises(MissingFxRate) as info:  # the EUR fee needs a rate to be valued
        state.valuation()
    assert info.value.currency == "EUR"

    state.apply(fx("EUR", "1.1"))
    v = state.valuation()
    assert v.cash == D("10047.425")  # 10048.25 - 0.75*1.1 = 10048.25 - 0.825
    assert v.fees == D("2.575")  # 1.75 + 0.75*1.1
    assert v.realized_pnl == D(50)
    assert v.equity == D("10047.425")  # flat: equity = cash = 10000 - fees 2.575 + realized 50


def test_zero_fee_with_a_currency_books_nothing():
    state = fold(usd_account(instrument("AAPL")), trade("o1", "AAPL", BUY, "1", "100", fee="0", fee_currency="JPY"))
    assert state.fees == {}
    assert state.cash == {"USD": D(9900)}  # 10000 - 100; no JPY entry


# -- currencies and multipliers --------------------------------------------------------

def two_currency_events() -> list:
    return [opened("USD"),
            instrument("SAP", "equity", "EUR"),
            instrument("SX5E-C", "option", "EUR", 100),
            deposit("50000", "USD"), deposit("20000", "EUR"),
            *trade("o1", "SAP", BUY, "100", "150"),
            *trade("o2", "SX5E-C", BUY, "3", "12.5"),
            *trade("o3", "SX5E-C", SELL, "1", "14")]


def test_two_currencies_multiplier_and_valuation_in_base():
    state = PortfolioState.fold(two_currency_events())
    assert state.cash == {"USD": D(50000),
                          "EUR": D(2650)}  # 20000 - 100*150 - 3*12.5*100 + 1*14*100 = 20000 - 15000 - 3750 + 1400
    option = pos(state, "SX5E-C")
    assert option.quantity == D(2) and option.average_price == D("12.5")
    assert option.realized_pnl == D(150)  # 1 * 100 * (14 - 12.5), in EUR

    with pytest.raises(MissingFxRate) as info:
        state.valuation()
    assert info.value.currency == "EUR"

    for event in (fx("EUR", "1.08"), mark("SAP", "160"), mark("SX5E-C", "13")):
        state.apply(event)
    v = state.valuation()
    assert v.base_currency == "USD"
    sap, opt = v.instruments["SAP"], v.instruments["SX5E-C"]
    assert sap.market_value == D(16000)  # 100 * 160 (EUR)
    assert sap.unrealized_pnl == D(1000)  # 100 * (160 - 150) (EUR)
    assert sap.net_exposure == sap.gross_exposure == D(17280)  # 16000 * 1.08 (USD)
    assert opt.mark == D(13)
    assert opt.market_value == D(2600)  # 2 * 13 * 100 (EUR)
    assert opt.unrealized_pnl == D(100)  # 2 * 100 * (13 - 12.5) (EUR)
    assert opt.realized_pnl == D(150)
    assert opt.net_exposure == D(2808)  # 2600 * 1.08
    assert v.cash == D(52862)  # 50000 + 2650 * 1.08
    assert v.equity == D(72950)  # 52862 + 17280 + 2808
    assert v.realized_pnl == D(162)  # 150 * 1.08
    assert v.unrealized_pnl == D(1188)  # (1000 + 100) * 1.08
    # equity = deposits + realized + unrealized, all in USD: 50000 + 20000*1.08 + 162 + 1188 = 72950
    assert v.equity == D(50000) + D(21600) + v.realized_pnl + v.unrealized_pnl
    assert v.gross_exposure == v.net_exposure == D(20088)  # 17280 + 2808
    assert v.gross_by_asset_class == {"equity": D(17280), "option": D(2808)}

    state.apply(fx("EUR", "1.1"))  # a later rate replaces the earlier one
    assert state.valuation().cash == D(52915)  # 50000 + 2650 * 1.1


def test_missing_rate_only_for_currencies_in_use():
    # A JPY instrument that was never traded needs no rate; a flat position with zero PnL needs none either.
    state = fold(usd_account(instrument("AAPL"), instrument("7203", "equity", "JPY")),
                 mark("7203", "2500"))
    assert state.valuation().equity == D(10000)
    state.apply(deposit("1000", "JPY"))
    with pytest.raises(MissingFxRate):
        state.valuation()
    state.apply(fx("JPY", "0.0065"))
    assert state.valuation().cash == D("10006.5")  # 10000 + 1000 * 0.0065


# -- valuation: marks, exposures, asset classes -------------------------------------------

def test_valuation_long_and_short_in_two_asset_classes():
    state = fold(usd_account(instrument("AAPL"), instrument("TSLA"), instrument("UST10", "bond")),
                 trade("o1", "AAPL", BUY, "10", "100"),
                 trade("o2", "TSLA", SELL, "2", "200"),
                 trade("o3", "TSLA", SELL, "2", "210"),
                 trade("o4", "UST10", BUY, "5", "98"),
                 mark("AAPL", "110"), mark("UST10", "97"))
    assert state.cash["USD"] == D(9330)  # 10000 - 1000 + 400 + 420 - 490
    v = state.valuation()
    aapl, tsla, ust = v.instruments["AAPL"], v.instruments["TSLA"], v.instruments["UST10"]
    assert (aapl.mark, aapl.market_value, aapl.unrealized_pnl) == (D(110), D(1100), D(100))  # 10*110, 10*(110-100)
    # TSLA has no mark: valued at its last fill price 210; average (200*2 + 210*2)/4 = 205
    assert (tsla.mark, tsla.quantity) == (D(210), D(-4))
    assert tsla.market_value == D(-840)  # -4 * 210
    assert tsla.unrealized_pnl == D(-20)  # -4 * (210 - 205)
    assert (tsla.gross_exposure, tsla.net_exposure) == (D(840), D(-840))
    assert (ust.market_value, ust.unrealized_pnl) == (D(485), D(-5))  # 5*97, 5*(97-98)
    assert v.unrealized_pnl == D(75)  # 100 - 20 - 5
    assert v.equity == D(10075)  # 9330 + 1100 - 840 + 485 = 10000 + 75
    assert v.gross_exposure == D(2425)  # 1100 + 840 + 485
    assert v.net_exposure == D(745)  # 1100 - 840 + 485
    assert v.gross_by_asset_class == {"bond": D(485), "equity": D(1940)}  # equity: 1100 + 840
    assert v.net_by_asset_class == {"bond": D(485), "equity": D(260)}  # equity: 1100 - 840
    assert list(v.gross_by_asset_class) == ["bond", "equity"]

    state.apply(mark("TSLA", "190"))  # a mark replaces the last fill price
    v = state.valuation()
    assert v.instruments["TSLA"].mark == D(190)
    assert v.instruments["TSLA"].unrealized_pnl == D(60)  # -4 * (190 - 205)
    assert v.equity == D(10155)  # 9330 + 1100 - 760 + 485
    assert v.net_by_asset_class["equity"] == D(340)  # 1100 - 760
    # a later fill does not override an existing mark
    for event in trade("o5", "TSLA", BUY, "1", "185"):
        state.apply(event)
    assert state.valuation().instruments["TSLA"].mark == D(190)


def test_valuation_is_not_part_of_the_hash():
    state = fold(usd_account(instrument("AAPL")), trade("o1", "AAPL", BUY, "1", "100"))
    before = state.state_hash()
    state.valuation()
    assert state.state_hash() == before


# -- open orders ---------------------------------------------------------------------------

def test_open_orders_lifecycle():
    state = fold(usd_account(instrument("AAPL")), requested("o1", "AAPL", BUY, "10", limit="101"))
    assert state.open_orders["o1"].status == "requested"
    assert state.open_orders["o1"].limit_price == D(101)
    state.apply(submitted("o1"))
    assert state.open_orders["o1"].status == "submitted"
    state.apply(accepted("o1"))
    assert state.open_orders["o1"].status == "accepted"
    state.apply(partial("o1", "4", "100"))
    order = state.open_orders["o1"]
    assert (order.status, order.filled_quantity, order.remaining, order.quantity) == (
        "partially_filled", D(4), D(6), D(10))  # remaining 10 - 4
    state.apply(partial("o1", "3", "107"))
    order = state.open_orders["o1"]
    assert (order.filled_quantity, order.remaining) == (D(7), D(3))  # 4 + 3, 10 - 7
    state.apply(OrderCancelled(occurred_at=T, order_id="o1"))
    assert "o1" not in state.open_orders
    assert pos(state, "AAPL").quantity == D(7)  # earlier fills stand
    assert pos(state, "AAPL").average_price == D(103)  # (4*100 + 3*107) / 7 = 721 / 7


def test_denied_rejected_and_directly_filled_orders_leave_no_open_order():
    state = fold(usd_account(instrument("AAPL")), requested("o2", "AAPL", BUY, "1000"))
    before_cash = dict(state.cash)
    state.apply(OrderDenied(occurred_at=T, order_id="o2", reason_codes=("max_notional", "max_position"),
                            detail="notional 100000 > 50000"))
    assert "o2" not in state.open_orders
    text = json.dumps(state.to_snapshot())
    assert "max_notional" not in text and "max_position" not in text and "50000" not in text  # reasons stay in history
    assert state.cash == before_cash

    for event in (requested("o3", "AAPL", SELL, "5"), submitted("o3"),
                  OrderRejected(occurred_at=T, order_id="o3", reason="market closed")):
        state.apply(event)
    assert "o3" not in state.open_orders
    assert "AAPL" not in state.positions

    for event in (requested("o4", "AAPL", BUY, "2"), submitted("o4"), filled("o4", "2", "50")):  # no OrderAccepted
        state.apply(event)
    assert state.open_orders == {}
    assert pos(state, "AAPL").quantity == D(2)
    assert state.cash["USD"] == D(9900)  # 10000 - 2*50

    # a terminal order's id may not receive more events
    with pytest.raises(InvalidTransition):
        state.apply(OrderSubmitted(occurred_at=T, order_id="o2"))


def test_strategy_signal_changes_nothing_but_the_version():
    state = fold(usd_account(instrument("AAPL")))
    before = state.to_snapshot()
    state.apply(StrategySignalEvent(occurred_at=T, strategy="momentum", instrument="AAPL", side=BUY,
                                    quantity=D(5), limit_price=D(100)))
    after = state.to_snapshot()
    assert after.pop("version") == before.pop("version") + 1
    assert after == before


def test_withdrawal_reduces_cash():
    state = fold(usd_account(), withdraw("2500.5"), withdraw("10", "EUR"))
    assert state.cash == {"USD": D("7499.5"), "EUR": D(-10)}  # 10000 - 2500.5; EUR 0 - 10


# -- invalid transitions ---------------------------------------------------------------------

def assert_refused(state: PortfolioState, event, *, match: str | None = None) -> InvalidTransition:
    """Applying ``event`` raises InvalidTransition naming it, and changes nothing."""
    before_hash, before_version, before = state.state_hash(), state.version, state.to_snapshot()
    with pytest.raises(InvalidTransition, match=match) as info:
        state.apply(event)
    inner = event.event if isinstance(event, RecordedEvent) else event
    assert info.value.event_id == inner.event_id
    assert str(inner.event_id) in str(info.value)
    assert info.value.sqlstate == "FC007"
    assert state.state_hash() == before_hash
    assert state.version == before_version
    assert state.to_snapshot() == before
    return info.value


def base_state() -> PortfolioState:
    return fold(usd_account(instrument("AAPL")), working("o1", "AAPL", BUY, "10"))


def test_first_event_must_be_portfolio_opened():
    assert_refused(PortfolioState(), deposit("1"), match="must be PortfolioOpened")
    assert_refused(PortfolioState(), instrument("AAPL"))


def test_second_portfolio_opened_is_refused():
    assert_refused(base_state(), opened("EUR"), match="already open")


def test_fill_for_unknown_order_is_refused():
    assert_refused(base_state(), filled("nope", "1", "100"), match="not open")
    assert_refused(base_state(), partial("nope", "1", "100"), match="not open")
    assert_refused(base_state(), OrderCancelled(occurred_at=T, order_id="nope"))


def test_order_filled_must_complete_the_quantity():
    state = base_state()
    assert_refused(state, filled("o1", "4", "100"), match="4 of 10")
    assert_refused(state, filled("o1", "11", "100"))
    state.apply(partial("o1", "4", "100"))
    assert_refused(state, filled("o1", "5", "100"), match="9 of 10")  # 4 + 5 = 9 < 10
    assert_refused(state, filled("o1", "7", "100"))  # 4 + 7 = 11 > 10
    state.apply(filled("o1", "6", "100"))  # 4 + 6 = 10
    assert "o1" not in state.open_orders


def test_partial_fill_may_not_complete_or_overfill():
    state = base_state()
    assert_refused(state, partial("o1", "10", "100"), match="completing fill is OrderFilled")
    assert_refused(state, partial("o1", "10.01", "100"))
    state.apply(partial("o1", "9.99", "100"))
    assert_refused(state, partial("o1", "0.01", "100"))  # 9.99 + 0.01 = 10 completes
    assert_refused(state, partial("o1", "1", "100"))  # overfills


def test_order_state_machine_order_of_steps():
    state = fold(usd_account(instrument("AAPL")), requested("o1", "AAPL", BUY, "10"))
    assert_refused(state, accepted("o1"), match="requested; OrderAccepted needs submitted")
    assert_refused(state, filled("o1", "10", "100"))  # not submitted yet
    assert_refused(state, OrderRejected(occurred_at=T, order_id="o1", reason="x"))
    assert_refused(state, OrderCancelled(occurred_at=T, order_id="o1"))
    assert_refused(state, requested("o1", "AAPL", SELL, "1"), match="already open")
    assert_refused(state, requested("o9", "MSFT", BUY, "1"), match="unknown instrument")
    state.apply(submitted("o1"))
    assert_refused(state, submitted("o1"))
    assert_refused(state, OrderDenied(occurred_at=T, order_id="o1", reason_codes=("late",)))
    state.apply(accepted("o1"))
    assert_refused(state, accepted("o1"))
    assert_refused(state, OrderRejected(occurred_at=T, order_id="o1", reason="x"))


def test_mark_for_unknown_instrument_is_refused():
    assert_refused(base_state(), mark("MSFT", "1"), match="unknown instrument")


def test_fx_rate_for_the_base_currency_is_refused():
    assert_refused(base_state(), fx("USD", "1"), match="base currency")


def test_terms_of_an_instrument_with_an_open_position_cannot_change():
    state = base_state()
    state.apply(filled("o1", "10", "100"))
    assert_refused(state, instrument("AAPL", "equity", "USD", 100), match="open position")
    state.apply(instrument("AAPL", "equity", "USD", 1))  # the same terms again are fine


def test_currency_of_an_instrument_with_realized_pnl_cannot_change():
    # SAP realizes 10 EUR (= 20 USD at 2). Re-registering it in USD while flat would relabel those
    # 10 EUR as 10 USD: valuation().realized_pnl would say 10 while the EUR cash gained is worth 20.
    state = fold(usd_account(instrument("SAP", "equity", "EUR")), fx("EUR", "2"),
                 trade("o1", "SAP", BUY, "1", "100"), trade("o2", "SAP", SELL, "1", "110"))
    assert pos(state, "SAP").quantity == 0
    assert pos(state, "SAP").realized_pnl == D(10)  # 1 * (110 - 100), EUR
    v = state.valuation()
    assert v.realized_pnl == D(20)  # 10 EUR * 2
    assert v.equity == D(10020)  # 10000 USD + 10 EUR * 2 = deposits + realized
    assert_refused(state, instrument("SAP", "equity", "USD"), match="realized PnL")
    assert state.valuation().realized_pnl == D(20)
    # other terms of a flat instrument may change: its realized PnL is already in currency units
    state.apply(instrument("SAP", "stock", "EUR", 10))
    assert state.valuation().realized_pnl == D(20)
    # and an instrument that never realized anything may change currency while flat
    state.apply(instrument("BMW", "equity", "EUR"))
    state.apply(instrument("BMW", "equity", "USD"))
    assert state.instruments["BMW"].currency == "USD"


def test_recorded_event_needs_the_next_version():
    state = base_state()  # 6 events: version 6
    assert state.version == 6
    event = deposit("1")
    for version in (8, 6, 1, 0):
        recorded = RecordedEvent(event, "portfolio-x", version, 100, T)
        assert_refused(state, recorded, match=f"stream version {version}")
    state.apply(RecordedEvent(event, "portfolio-x", 7, 100, T))
    assert state.version == 7 and state.cash["USD"] == D(10001)


def test_unknown_event_type_is_refused():
    assert_refused(base_state(), DomainEvent(occurred_at=T), match="does not know")


# -- determinism --------------------------------------------------------------------------

def fixed_sequence() -> list:
    """A fixed multi-currency sequence with ids fixed too (several keys per dict, a non-terminating average)."""
    events = [opened("USD"),
              instrument("SAP", "equity", "EUR"), instrument("7203", "equity", "JPY"),
              instrument("SX5E-C", "option", "EUR", 100), instrument("AAPL"),
              deposit("50000"), deposit("20000", "EUR"), deposit("1000000", "JPY"),
              fx("EUR", "1.0843"), fx("JPY", "0.00651"),
              *trade("o1", "AAPL", BUY, "1", "1"), *trade("o2", "AAPL", BUY, "2", "2"),  # average 5/3
              *trade("o3", "SAP", SELL, "7", "151.37", fee="1.1", fee_currency="EUR"),
              *trade("o4", "7203", BUY, "300", "2512", fee="150", fee_currency="JPY"),
              *working("o5", "SX5E-C", BUY, "3"), partial("o5", "1", "12.5"),
              mark("SAP", "149.99"), mark("SX5E-C", "13.2")]
    return [dataclasses.replace(e, event_id=UUID(int=i + 1), correlation_id=None) for i, e in enumerate(events)]


def test_fold_of_fixed_sequence_is_exact():
    state = PortfolioState.fold(fixed_sequence())
    assert pos(state, "AAPL").average_price == D("1.666666666666666666666666666666667")  # 5/3 to 34 digits, half-even
    assert state.cash == {"USD": D(49995),  # 50000 - 1 - 4
                          "EUR": D("19808.49"),  # 20000 + 7*151.37 - 1.1 - 1*12.5*100 = 20000 + 1059.59 - 1.1 - 1250
                          "JPY": D(246250)}  # 1000000 - 300*2512 - 150 = 1000000 - 753600 - 150


def test_state_hash_is_deterministic_and_sensitive():
    events = fixed_sequence()
    a, b = PortfolioState.fold(events), PortfolioState.fold(list(events))
    assert a.state_hash() == b.state_hash()
    assert len(a.state_hash()) == 64
    changed = list(events)
    changed[5] = deposit("50000.01")  # one amount differs by a cent
    assert PortfolioState.fold(changed).state_hash() != a.state_hash()
    reordered = list(events)
    reordered[-1], reordered[-2] = reordered[-2], reordered[-1]  # two marks swapped: same state
    assert PortfolioState.fold(reordered).state_hash() == a.state_hash()
    # the value, not its spelling: 50000.00 is 50000
    respelled = list(events)
    respelled[5] = deposit("50000.00")
    assert PortfolioState.fold(respelled).state_hash() == a.state_hash()


def test_state_hash_ignores_the_callers_decimal_context():
    events = fixed_sequence()
    expected = PortfolioState.fold(events).state_hash()
    expected_equity = PortfolioState.fold(events).valuation().equity
    with decimal.localcontext() as context:
        context.prec = 6
        context.rounding = ROUND_DOWN
        state = PortfolioState.fold(events)
        assert state.state_hash() == expected
        assert state.valuation().equity == expected_equity
        assert pos(state, "AAPL").average_price == D("1.666666666666666666666666666666667")
    old = decimal.getcontext().prec
    try:
        decimal.getcontext().prec = 6
        assert PortfolioState.fold(events).state_hash() == expected
    finally:
        decimal.getcontext().prec = old


def test_apply_all_is_apply_in_turn_and_stops_at_the_first_refused_event():
    events = fixed_sequence()
    one_by_one = PortfolioState()
    with decimal.localcontext() as context:
        context.prec = 6
        for event in events:
            one_by_one.apply(event)
        all_at_once = PortfolioState().apply_all(iter(events))
    assert one_by_one.state_hash() == all_at_once.state_hash() == PortfolioState.fold(events).state_hash()
    assert pos(all_at_once, "AAPL").average_price == D("1.666666666666666666666666666666667")

    refused = partial("no-such-order", "1", "1")
    state = PortfolioState()
    with pytest.raises(InvalidTransition, match="no-such-order"):
        state.apply_all([*events[:10], refused, *events[10:]])
    assert state.version == 10 and state.state_hash() == PortfolioState.fold(events[:10]).state_hash()


def test_apply_versioned_is_apply_all_of_recorded_events_and_refuses_a_version_out_of_turn():
    events = fixed_sequence()
    with decimal.localcontext() as context:
        context.prec = 6  # the fold's own context applies, not the caller's
        versioned = PortfolioState().apply_versioned(iter(enumerate(events, 1)))
    recorded = PortfolioState().apply_all(RecordedEvent(e, "portfolio-x", v, v, T) for v, e in enumerate(events, 1))
    assert versioned.state_hash() == recorded.state_hash() == PortfolioState.fold(events).state_hash()

    for wrong in (10, 12, 1):  # a repeat, a gap, a restart: nothing from the 11th on is applied
        state = PortfolioState()
        pairs = [*enumerate(events[:10], 1), (wrong, events[10]), *enumerate(events[11:], 12)]
        with pytest.raises(InvalidTransition, match=f"stream version {wrong}, but the state is at version 10"):
            state.apply_versioned(pairs)
        assert state.version == 10 and state.state_hash() == PortfolioState.fold(events[:10]).state_hash()


HASH_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_portfolio import fixed_sequence
from finam_thin.portfolio import PortfolioState
print(PortfolioState.fold(fixed_sequence()).state_hash())
"""


def test_state_hash_is_the_same_across_hash_seeds():
    expected = PortfolioState.fold(fixed_sequence()).state_hash()
    script = HASH_SCRIPT.format(tests=str(REPO_ROOT / "tests"))
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=60, check=True)
        assert result.stdout.strip() == expected, (seed, result.stderr)


# -- snapshots ---------------------------------------------------------------------------

def assert_sorted_keys(value) -> None:
    if isinstance(value, dict):
        assert list(value) == sorted(value)
        for item in value.values():
            assert_sorted_keys(item)


def test_snapshot_round_trip():
    state = PortfolioState.fold(fixed_sequence())
    snapshot = state.to_snapshot()
    assert_sorted_keys(snapshot)
    assert json.dumps(snapshot) == json.dumps(snapshot, sort_keys=True)
    assert snapshot["version"] == state.version == len(fixed_sequence())
    assert snapshot["positions"]["AAPL"]["average_price"] == "1.666666666666666666666666666666667"
    assert snapshot["open_orders"]["o5"] == {"emergency_exit": False, "filled_quantity": "1", "instrument": "SX5E-C",
                                             "limit_price": None, "quantity": "3", "reference_price": None,
                                             "side": "buy", "status": "partially_filled"}

    restored = PortfolioState.from_snapshot(snapshot)
    assert restored == state
    assert restored.state_hash() == state.state_hash()
    assert restored.to_snapshot() == snapshot

    through_json = PortfolioState.from_snapshot(json.loads(json.dumps(snapshot), parse_float=Decimal))
    assert through_json == state
    assert through_json.state_hash() == state.state_hash()
    assert through_json.valuation() == state.valuation()

    # the restored state carries on exactly like the original
    for s in (state, restored, through_json):
        s.apply(filled("o5", "2", "13"))
    assert state.state_hash() == restored.state_hash() == through_json.state_hash()


def test_empty_state_snapshot():
    state = PortfolioState()
    assert PortfolioState.from_snapshot(state.to_snapshot()).state_hash() == state.state_hash()
