"""Property tests of the PortfolioState fold over generated, valid portfolio streams.

A Hypothesis strategy builds one portfolio's history that follows the order
state machine (requested -> denied | submitted -> rejected | accepted ->
partially filled* -> filled | cancelled, fills also straight from submitted).
The expectations are computed here, independently of the fold: cash per
currency from the event list, and positions with exact ``Fraction`` arithmetic.
The last property replays the same streams through the real PostgreSQL store.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from uuid import UUID, uuid4, uuid5

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finam_thin.events import (
    TRADING_EVENTS,
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
from finam_thin.portfolio import MissingFxRate, PortfolioState
from finam_thin.repository import PortfolioRepository, portfolio_stream

T = datetime(2026, 11, 24, tzinfo=UTC)
ZERO = Decimal(0)
CURRENCIES = ("USD", "EUR", "JPY")
ASSET_CLASSES = ("equity", "option", "bond", "future")
#: Tolerance for figures that depend on an average price (a quotient rounded to 34 significant digits).
#: Inputs are below 1e3 with 2 places, so one rounding costs < 1e-30 of a unit; a real accounting
#: error is at least 0.0001 (the smallest quantity*price step).
ROUNDING = Decimal("1e-18")

# small whole quantities make positions meet, cross and flip often; a few have 2 places
quantities = (st.integers(1, 20).map(Decimal)
              | st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2,
                            allow_nan=False, allow_infinity=False))
prices = st.decimals(min_value=Decimal("-5"), max_value=Decimal("500"), places=2,
                     allow_nan=False, allow_infinity=False)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2,
                      allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=Decimal("0"), max_value=Decimal("10"), places=2, allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("200"), places=4,
                    allow_nan=False, allow_infinity=False)


@dataclass
class _Order:
    instrument: str
    side: Side
    quantity: Decimal
    status: str
    filled: Decimal = ZERO


@dataclass
class _Book:
    """What the generator needs to know to emit only valid events."""

    base: str
    currencies: tuple[str, ...]
    unregistered: list[tuple[str, InstrumentRegistered]]
    registered: dict[str, InstrumentRegistered] = field(default_factory=dict)
    orders: dict[str, _Order] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)  # signed quantity, to aim orders at flat
    next_order: int = 1
    next_fill: int = 1


@st.composite
def portfolio_histories(draw, currencies: tuple[str, ...] = CURRENCIES, final_rates: bool = True,
                        max_events: int = 60):
    """A valid event list of one portfolio (PortfolioOpened first), at most ``max_events`` long.

    With ``final_rates`` the list ends with an FxRateUpdated for every non-base currency.
    """
    base = draw(st.sampled_from(currencies))
    others = [c for c in currencies if c != base]
    count = draw(st.integers(2, 4))
    unregistered = [(f"I{i}", InstrumentRegistered(
        occurred_at=T, instrument=f"I{i}", asset_class=draw(st.sampled_from(ASSET_CLASSES)),
        currency=draw(st.sampled_from(currencies)), multiplier=Decimal(draw(st.sampled_from((1, 100))))))
        for i in range(count)]
    book = _Book(base, currencies, unregistered)
    events = [PortfolioOpened(occurred_at=T, base_currency=base)]
    budget = max_events - 1 - (len(others) if final_rates else 0)
    target = draw(st.integers(min(12, budget), budget))
    while len(events) < 1 + target:
        events.append(_next_event(draw, book, others))
    if final_rates:
        events.extend(FxRateUpdated(occurred_at=T, currency=c, rate=draw(rates)) for c in others)
    return [dataclasses.replace(e, event_id=UUID(int=i + 1), correlation_id=None) for i, e in enumerate(events)]


def _next_event(draw, book: _Book, other_currencies: list[str]):
    choices = ["cash"]
    if book.unregistered:
        choices += ["register"] * (3 if not book.registered else 1)
    if book.registered:
        choices += ["reregister", "mark", "signal"] + ["order"] * (6 if len(book.orders) < 2 else 1)
    if other_currencies:
        choices.append("fx")
    if book.orders:
        choices += ["advance"] * 20
    action = draw(st.sampled_from(choices))
    if action == "register":
        name, event = book.unregistered.pop(0)
        book.registered[name] = event
        return event
    if action == "reregister":
        name = draw(st.sampled_from(sorted(book.registered)))
        known = book.registered[name]
        if book.positions.get(name, ZERO) != 0 or draw(st.booleans()):
            return known  # the same terms again: allowed, changes nothing
        # a flat instrument may change its terms; its currency only if it never traded (no realized PnL)
        event = dataclasses.replace(
            known, asset_class=draw(st.sampled_from(ASSET_CLASSES)),
            multiplier=Decimal(draw(st.sampled_from((1, 100)))),
            currency=known.currency if name in book.positions else draw(st.sampled_from(book.currencies)))
        book.registered[name] = event
        return event
    if action == "cash":
        kind = draw(st.sampled_from((CashDeposited, CashDeposited, CashWithdrawn)))
        return kind(occurred_at=T, currency=draw(st.sampled_from(book.currencies)), amount=draw(amounts))
    if action == "fx":
        return FxRateUpdated(occurred_at=T, currency=draw(st.sampled_from(other_currencies)), rate=draw(rates))
    instrument = draw(st.sampled_from(sorted(book.registered))) if book.registered else None
    if action == "mark":
        return MarkPriceUpdated(occurred_at=T, instrument=instrument, price=draw(prices))
    if action == "signal":
        return StrategySignalEvent(occurred_at=T, strategy="s", instrument=instrument,
                                   side=draw(st.sampled_from(Side)), quantity=draw(quantities))
    if action == "order":
        order_id = f"o{book.next_order}"
        book.next_order += 1
        held = book.positions.get(instrument, ZERO)
        if held and draw(st.integers(0, 3)) == 0:  # an order that would bring the position back to flat
            side, quantity = (Side.SELL if held > 0 else Side.BUY), abs(held)
        else:
            side, quantity = draw(st.sampled_from(Side)), draw(quantities)
        book.orders[order_id] = _Order(instrument, side, quantity, "requested")
        return OrderRequested(occurred_at=T, order_id=order_id, instrument=instrument, side=side, quantity=quantity,
                              limit_price=draw(st.none() | prices), strategy=draw(st.none() | st.just("s")))
    # advance one open order along the state machine
    order_id = draw(st.sampled_from(sorted(book.orders)))
    order = book.orders[order_id]
    remaining = order.quantity - order.filled
    if order.status == "requested":
        step = draw(st.sampled_from(("denied",) + ("submitted",) * 5))
    elif order.status == "submitted":
        step = draw(st.sampled_from(("rejected", "accepted", "accepted", "partial", "filled", "filled", "cancelled")))
    else:  # accepted or partially_filled
        step = draw(st.sampled_from(("partial", "partial", "filled", "filled", "filled", "cancelled")))
    if step == "partial" and remaining < Decimal("0.02"):
        step = "filled"
    if step == "denied":
        del book.orders[order_id]
        return OrderDenied(occurred_at=T, order_id=order_id, reason_codes=("limit",))
    if step == "submitted":
        order.status = "submitted"
        return OrderSubmitted(occurred_at=T, order_id=order_id)
    if step == "rejected":
        del book.orders[order_id]
        return OrderRejected(occurred_at=T, order_id=order_id, reason="venue")
    if step == "accepted":
        order.status = "accepted"
        return OrderAccepted(occurred_at=T, order_id=order_id)
    if step == "cancelled":
        del book.orders[order_id]
        return OrderCancelled(occurred_at=T, order_id=order_id)
    fee = draw(fees)
    fee_currency = draw(st.sampled_from(book.currencies)) if fee else draw(st.none() | st.sampled_from(book.currencies))
    fill_id = f"f{book.next_fill}"
    book.next_fill += 1
    price = draw(prices)
    if step == "partial":
        quantity = draw(st.decimals(min_value=Decimal("0.01"), max_value=remaining - Decimal("0.01"), places=2,
                                    allow_nan=False, allow_infinity=False))
        order.status = "partially_filled"
        order.filled += quantity
        book.positions[order.instrument] = book.positions.get(order.instrument, ZERO) + order.side.sign * quantity
        return OrderPartiallyFilled(occurred_at=T, order_id=order_id, fill_id=fill_id, quantity=quantity,
                                    price=price, fee=fee, fee_currency=fee_currency)
    del book.orders[order_id]
    book.positions[order.instrument] = book.positions.get(order.instrument, ZERO) + order.side.sign * remaining
    return OrderFilled(occurred_at=T, order_id=order_id, fill_id=fill_id, quantity=remaining, price=price,
                       fee=fee, fee_currency=fee_currency)


# -- an independent reference: the event list read with exact arithmetic ------------------

@dataclass
class Reference:
    base: str
    deposits: dict[str, Fraction] = field(default_factory=dict)  # deposits - withdrawals
    fees: dict[str, Fraction] = field(default_factory=dict)
    notionals: dict[str, Fraction] = field(default_factory=dict)  # sells - buys
    quantity: dict[str, Fraction] = field(default_factory=dict)
    average: dict[str, Fraction] = field(default_factory=dict)
    realized: dict[str, Fraction] = field(default_factory=dict)
    last_price: dict[str, Fraction] = field(default_factory=dict)
    marks: dict[str, Fraction] = field(default_factory=dict)
    rates: dict[str, Fraction] = field(default_factory=dict)
    terms: dict[str, tuple[str, Fraction]] = field(default_factory=dict)  # instrument -> (currency, multiplier)

    def cash(self, currency: str) -> Fraction:
        return (self.deposits.get(currency, Fraction(0)) + self.notionals.get(currency, Fraction(0))
                - self.fees.get(currency, Fraction(0)))

    def rate(self, currency: str) -> Fraction:
        return Fraction(1) if currency == self.base else self.rates[currency]


def _add(book: dict, key: str, amount: Fraction) -> None:
    book[key] = book.get(key, Fraction(0)) + amount


def reference(events) -> Reference:
    """Cash, fees and positions from the events alone: the textbook average-cost rules, exactly."""
    ref = Reference(events[0].base_currency)
    orders: dict[str, OrderRequested] = {}
    for event in events[1:]:
        if isinstance(event, InstrumentRegistered):
            ref.terms[event.instrument] = (event.currency, Fraction(event.multiplier))
        elif isinstance(event, CashDeposited):
            _add(ref.deposits, event.currency, Fraction(event.amount))
        elif isinstance(event, CashWithdrawn):
            _add(ref.deposits, event.currency, -Fraction(event.amount))
        elif isinstance(event, FxRateUpdated):
            ref.rates[event.currency] = Fraction(event.rate)
        elif isinstance(event, MarkPriceUpdated):
            ref.marks[event.instrument] = Fraction(event.price)
        elif isinstance(event, OrderRequested):
            orders[event.order_id] = event
        elif isinstance(event, (OrderPartiallyFilled, OrderFilled)):
            order = orders[event.order_id]
            name = order.instrument
            currency, multiplier = ref.terms[name]
            fill, price = Fraction(event.quantity), Fraction(event.price)
            _add(ref.notionals, currency, -order.side.sign * fill * price * multiplier)
            if event.fee:
                _add(ref.fees, event.fee_currency, Fraction(event.fee))
            q, avg = ref.quantity.get(name, Fraction(0)), ref.average.get(name, Fraction(0))
            signed = order.side.sign * fill
            if q == 0 or (q > 0) == (signed > 0):
                avg = (avg * abs(q) + price * fill) / (abs(q) + fill)
                q += signed
            else:
                closed = min(fill, abs(q))
                _add(ref.realized, name, closed * multiplier * (price - avg) * (1 if q > 0 else -1))
                if fill > abs(q):
                    q, avg = signed + q, price
                else:
                    q += signed
                    if q == 0:
                        avg = Fraction(0)
            ref.quantity[name], ref.average[name], ref.last_price[name] = q, avg, price
    return ref


def close(actual: Decimal, expected: Fraction) -> bool:
    return abs(Fraction(actual) - expected) <= Fraction(ROUNDING)


# -- properties -----------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(portfolio_histories())
def test_fold_never_raises_and_valuation_works_with_every_rate(events):
    state = PortfolioState.fold(events)
    assert state.version == len(events)
    valuation = state.valuation()
    assert valuation.base_currency == events[0].base_currency
    assert valuation.gross_exposure >= valuation.net_exposure.copy_abs()  # copy_abs: exact, no context
    for asset_class, gross in valuation.gross_by_asset_class.items():
        assert gross >= valuation.net_by_asset_class[asset_class].copy_abs()


@settings(max_examples=200, deadline=None)
@given(portfolio_histories(final_rates=False))
def test_valuation_fails_only_for_a_missing_rate(events):
    state = PortfolioState.fold(events)
    try:
        state.valuation()
    except MissingFxRate as error:
        assert error.currency != state.base_currency
        assert error.currency not in state.fx_rates
        # the currency really is in use: a non-zero cash or fee amount, or an instrument with value or PnL
        ref = reference(events)
        in_use = {c for c in set(ref.deposits) | set(ref.notionals) | set(ref.fees)
                  if ref.cash(c) != 0 or ref.fees.get(c, 0) != 0}
        for name, q in ref.quantity.items():
            mark = ref.marks.get(name, ref.last_price[name])
            # (the fold's realized PnL too: two closes may cancel exactly, but not after rounding the average)
            realized = ref.realized.get(name, 0) != 0 or state.positions[name].realized_pnl != 0
            if q * mark != 0 or realized or q * (mark - ref.average[name]) != 0:
                in_use.add(ref.terms[name][0])
        assert error.currency in in_use


@settings(max_examples=100, deadline=None)
@given(portfolio_histories())
def test_snapshot_at_every_cut_then_tail_gives_the_full_hash(events):
    full = PortfolioState.fold(events).state_hash()
    running = PortfolioState()
    for k in range(len(events) + 1):
        snapshot = running.to_snapshot()
        for restored in (PortfolioState.from_snapshot(snapshot),
                         PortfolioState.from_snapshot(json.loads(json.dumps(snapshot), parse_float=Decimal))):
            assert restored.state_hash() == running.state_hash()
            for event in events[k:]:
                restored.apply(event)
            assert restored.state_hash() == full, f"cut at {k}"
        if k < len(events):
            running.apply(events[k])


@settings(max_examples=200, deadline=None)
@given(portfolio_histories())
def test_cash_is_conserved_per_currency(events):
    state = PortfolioState.fold(events)
    ref = reference(events)
    currencies = set(state.cash) | set(ref.deposits) | set(ref.notionals) | set(ref.fees)
    for currency in currencies:
        # deposits - withdrawals - buy notionals + sell notionals - fees: exact, no rounding anywhere
        assert Fraction(state.cash.get(currency, ZERO)) == ref.cash(currency), currency
    for currency in set(state.fees) | set(ref.fees):
        assert Fraction(state.fees.get(currency, ZERO)) == ref.fees.get(currency, Fraction(0)), currency


@settings(max_examples=200, deadline=None)
@given(portfolio_histories())
def test_positions_match_exact_average_cost(events):
    state = PortfolioState.fold(events)
    ref = reference(events)
    assert set(state.positions) == set(ref.quantity)
    for name, position in state.positions.items():
        assert Fraction(position.quantity) == ref.quantity[name]  # sums of 2-place quantities: exact
        assert Fraction(position.last_price) == ref.last_price[name]
        assert close(position.average_price, ref.average[name]), name
        assert close(position.realized_pnl, ref.realized.get(name, Fraction(0))), name
        if ref.quantity[name] == 0:
            assert position.average_price == 0


def _assert_equity_identity(events) -> None:
    """equity = deposits - withdrawals - fees + realized + unrealized, all in base at the final rates.

    Derivation, per instrument of currency c and multiplier m, with fills f_j (signed) at p_j:
    cash_c = D_c - F_c - sum_j f_j p_j m, and the average-cost rules keep the invariant
    realized - q·m·avg = -sum_j f_j p_j m (adding moves q·avg by f·p; closing x units at p moves
    realized by x·m·(p - avg)·sign and q·m·avg by -x·m·avg·sign). Market value q·m·mark =
    unrealized + q·m·avg, so cash + market value = D - F + realized + unrealized in every
    currency, and converting each currency at one rate keeps the equality. It is exact up to
    the rounding of the average price (a quotient) to 34 digits.
    """
    state = PortfolioState.fold(events)
    v = state.valuation()
    ref = reference(events)
    deposits = sum((amount * ref.rate(c) for c, amount in ref.deposits.items()), Fraction(0))
    fee_total = sum((amount * ref.rate(c) for c, amount in ref.fees.items()), Fraction(0))
    expected = deposits - fee_total + Fraction(v.realized_pnl) + Fraction(v.unrealized_pnl)
    assert close(v.equity, expected), (v.equity, float(expected))
    assert Fraction(v.fees) == fee_total
    # and against the exact reference's PnL too
    realized = sum((pnl * ref.rate(ref.terms[name][0]) for name, pnl in ref.realized.items()), Fraction(0))
    unrealized = sum((q * ref.terms[name][1] * (ref.marks.get(name, ref.last_price[name]) - ref.average[name])
                      * ref.rate(ref.terms[name][0]) for name, q in ref.quantity.items()), Fraction(0))
    assert close(v.equity, deposits - fee_total + realized + unrealized)
    assert close(v.realized_pnl, realized) and close(v.unrealized_pnl, unrealized)


@settings(max_examples=200, deadline=None)
@given(portfolio_histories(currencies=("USD",)))
def test_equity_identity_single_currency(events):
    _assert_equity_identity(events)


@settings(max_examples=200, deadline=None)
@given(portfolio_histories())
def test_equity_identity_at_final_rates(events):
    _assert_equity_identity(events)


# -- the same streams through PostgreSQL ---------------------------------------------------

def test_repository_load_with_and_without_snapshot_matches_the_fold(store, snapshot_store):
    repository = PortfolioRepository(store, snapshot_store, page_size=7)  # several pages per stream

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(events=portfolio_histories(), data=st.data())
    def check(events, data):
        namespace = uuid4()
        events = [dataclasses.replace(e, event_id=uuid5(namespace, str(i)), correlation_id=None)
                  for i, e in enumerate(events)]
        stream = portfolio_stream(str(namespace))
        store.append(stream, [TRADING_EVENTS.encode(e) for e in events], expected_version=0)
        k = data.draw(st.integers(0, len(events)), label="k")
        saved = repository.save_snapshot(stream, PortfolioState.fold(events[:k]))
        assert saved == (k > 0)
        full = PortfolioState.fold(events).state_hash()
        with_snapshot = repository.load(stream)
        assert with_snapshot.version == len(events)
        assert with_snapshot.state_hash() == full
        assert repository.load(stream, use_snapshot=False).state_hash() == full

    check()
