"""PortfolioState: the deterministic fold of a portfolio stream.

Pure domain code: no database, no clock, no randomness, no floats. The same
events in the same (store) order give the same state and the same
``state_hash()`` on any machine: every computation runs in one fixed Decimal
context (``FOLD_CONTEXT``) regardless of the caller's, and every dict is
serialized with sorted keys.

Accounting rules (as in NautilusTrader and LEAN). For a fill of ``fill``
units at price ``px`` on a position of signed quantity ``q`` with average
price ``avg`` (instrument multiplier ``m``):

- adding (flat, or the fill is on the position's side):
  ``avg = (avg·|q| + px·fill) / (|q| + fill)``; ``q += ±fill``.
- reducing (the fill is against the position): ``closed = min(fill, |q|)``;
  the average is unchanged; ``realized += closed·m·(px − avg)`` for a long,
  ``closed·m·(avg − px)`` for a short. A flat position's average is 0.
- flipping (the fill is larger than ``|q|``): split into a close leg of ``|q|``
  (realizes as above) and an open leg of ``fill − |q|`` at ``px`` (the new average).
- cash: a buy pays ``fill·px·m`` of the instrument's currency, a sell receives it
  (cash-settled instruments: notional moves cash; futures margining is not modelled).
- fees: booked separately — taken from cash in the fee currency and summed in
  ``fees``; realized PnL excludes them.

Valuation (``valuation()``, derived and not part of the hash): an instrument is
valued at its last ``MarkPriceUpdated`` price, or its last fill price until a
mark arrives. Amounts convert to the base currency at the last ``FxRateUpdated``
rate (1 for the base currency itself); a currency without a rate makes the
valuation raise ``MissingFxRate``.

Risk state, folded from events too: the trading state (``TradingStateChanged``;
``TradingDayStarted`` ends a REDUCING latch), the trading day and its baseline
equity (``TradingDayStarted``), the published correlation clusters
(``ClusterMapPublished``, versions strictly increasing), and the times of the
last ``RECENT_ORDERS_KEPT`` order requests per instrument (for order-rate limits).

Events that break the state machine (a fill for an unknown order, a first
event that is not ``PortfolioOpened``, …) raise ``InvalidTransition`` naming the
event: a stream is never folded past something it cannot account for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import Any

import msgspec

from .contract import DomainEvent, RecordedEvent, canonical_decimal, canonical_time
from .errors import FinamError
from .events import (
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
    ClusterMapPublished,
    PortfolioOpened,
    Side,
    SignalDenied,
    StrategySignalEvent,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
    _OrderFill,
)

#: Layout version of ``to_snapshot()``; a snapshot of another layout is ignored and the state rebuilt.
STATE_SCHEMA_VERSION = 1

#: The one Decimal context every fold and valuation computes in (34 digits, banker's rounding, traps on).
FOLD_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                       traps=[InvalidOperation, DivisionByZero, Overflow], flags=[])

ZERO = Decimal(0)

#: How many OrderRequested times per instrument the state keeps (for order-rate limits).
RECENT_ORDERS_KEPT = 50


class InvalidTransition(FinamError):
    """FC007 (raised by the Python layer): an event does not fit the state it is applied to.

    ``event_id`` names the offending event; the state is left as it was before it.
    """

    sqlstate = "FC007"

    def __init__(self, message: str, *, event_id=None) -> None:
        super().__init__(message)
        self.event_id = event_id


class MissingFxRate(FinamError):
    """FC008 (raised by the Python layer): a valuation needs a currency's rate to the base and none was recorded."""

    sqlstate = "FC008"

    def __init__(self, currency: str) -> None:
        super().__init__(f"no FxRateUpdated for {currency}: cannot convert it to the base currency")
        self.currency = currency


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the portfolio knows about a tradable instrument."""

    asset_class: str
    currency: str
    multiplier: Decimal
    lot_size: Decimal = Decimal(1)


class Position(msgspec.Struct, frozen=True, gc=False):
    """Signed ``quantity`` (negative = short), ``average_price`` of the open quantity,
    ``realized_pnl`` in the instrument's currency (fees excluded), ``last_price`` of the last fill.

    Immutable (a msgspec Struct: the fold builds one per fill, 3x cheaper than a frozen dataclass)."""

    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    last_price: Decimal = ZERO


class OpenOrder(msgspec.Struct, frozen=True, gc=False):
    """An order that is not yet terminal. Immutable (a msgspec Struct, like ``Position``)."""

    instrument: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    status: str  # requested | submitted | accepted | partially_filled
    filled_quantity: Decimal = ZERO
    reference_price: Decimal | None = None
    emergency_exit: bool = False

    @property
    def remaining(self) -> Decimal:
        with localcontext(FOLD_CONTEXT):
            return self.quantity - self.filled_quantity

    def with_status(self, status: str, filled_quantity: Decimal | None = None) -> OpenOrder:
        """This order in ``status`` (and with ``filled_quantity``); a direct constructor call, cheaper than replace()."""
        return OpenOrder(self.instrument, self.side, self.quantity, self.limit_price, status,
                         self.filled_quantity if filled_quantity is None else filled_quantity,
                         self.reference_price, self.emergency_exit)


@dataclass(frozen=True, slots=True)
class InstrumentValuation:
    """One instrument's figures: ``market_value``/``unrealized_pnl``/``realized_pnl`` in its own
    currency, ``gross_exposure``/``net_exposure`` in the base currency."""

    instrument: str
    asset_class: str
    currency: str
    quantity: Decimal
    mark: Decimal
    market_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal


@dataclass(frozen=True, slots=True)
class Valuation:
    """The portfolio in its base currency at its last marks and rates."""

    base_currency: str
    cash: Decimal
    equity: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    instruments: dict[str, InstrumentValuation]
    gross_by_asset_class: dict[str, Decimal]
    net_by_asset_class: dict[str, Decimal]


ORDER_STATES_ACCEPTING_FILLS = ("submitted", "accepted", "partially_filled")


class PortfolioState:
    """The fold of one portfolio stream: cash, positions, fees, marks, rates and open orders.

    ``apply()`` takes events in stream order; ``version`` counts the events
    applied (= the stream version of the last one). Only ``apply()`` and
    ``from_snapshot()`` change a state.
    """

    def __init__(self) -> None:
        self.version = 0
        self.base_currency: str | None = None
        self.instruments: dict[str, Instrument] = {}
        self.cash: dict[str, Decimal] = {}
        self.fees: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, Decimal] = {}
        self.fx_rates: dict[str, Decimal] = {}
        self.open_orders: dict[str, OpenOrder] = {}
        self.trading_state = TradingState.ACTIVE
        self.trading_day: date | None = None
        self.baseline_equity: Decimal | None = None
        self.cluster_map_version = 0
        self.clusters: dict[str, str] = {}
        self.recent_orders: dict[str, tuple[datetime, ...]] = {}

    # -- folding ----------------------------------------------------------------

    @classmethod
    def fold(cls, events: Iterable[DomainEvent | RecordedEvent]) -> PortfolioState:
        """A new state with ``events`` applied in order."""
        return cls().apply_all(events)

    def apply(self, event: DomainEvent | RecordedEvent) -> PortfolioState:
        """Apply the next event of the stream (InvalidTransition if it does not fit; nothing changes then).

        A RecordedEvent must carry the next version (``version + 1``).
        """
        with localcontext(FOLD_CONTEXT):
            return self._apply(event)

    def apply_all(self, events: Iterable[DomainEvent | RecordedEvent]) -> PortfolioState:
        """Apply ``events`` in order, as many ``apply`` calls (the replay path: one decimal context for all).

        Stops at the first event that does not fit (InvalidTransition); the ones before it stay applied.
        """
        with localcontext(FOLD_CONTEXT):
            for event in events:
                self._apply(event)
        return self

    def apply_versioned(self, events: Iterable[tuple[int, DomainEvent]]) -> PortfolioState:
        """Apply ``(stream version, event)`` pairs in order, like :meth:`apply_all` of RecordedEvents:
        each version must be the state's next (InvalidTransition otherwise). The repository's replay."""
        with localcontext(FOLD_CONTEXT):
            for version, event in events:
                self._require_next_version(version, event)
                self._apply(event)
        return self

    def _apply(self, event: DomainEvent | RecordedEvent) -> PortfolioState:
        """``apply`` inside FOLD_CONTEXT."""
        if isinstance(event, RecordedEvent):
            self._require_next_version(event.version, event.event)
            event = event.event
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise InvalidTransition(f"event {event.event_id}: PortfolioState does not know {event.type_name}",
                                    event_id=event.event_id)
        if self.base_currency is None and not isinstance(event, PortfolioOpened):
            self._refuse(event, "the first event of a portfolio must be PortfolioOpened")
        handler(self, event)
        self.version += 1
        return self

    def _require_next_version(self, version: int, event: DomainEvent) -> None:
        if version != self.version + 1:
            raise InvalidTransition(f"event {event.event_id} has stream version {version}, "
                                    f"but the state is at version {self.version}", event_id=event.event_id)

    def _refuse(self, event: DomainEvent, reason: str) -> None:
        raise InvalidTransition(f"event {event.event_id} ({event.type_name}) at version {self.version + 1}: {reason}",
                                event_id=event.event_id)

    def _on_opened(self, event: PortfolioOpened) -> None:
        if self.base_currency is not None:
            self._refuse(event, "the portfolio is already open")
        self.base_currency = event.base_currency

    def _on_instrument(self, event: InstrumentRegistered) -> None:
        known = self.instruments.get(event.instrument)
        new = Instrument(event.asset_class, event.currency, event.multiplier, event.lot_size)
        position = self.positions.get(event.instrument, Position())
        if known is not None and known != new and position.quantity != 0:
            self._refuse(event, f"{event.instrument} has an open position: its terms cannot change")
        if known is not None and known.currency != new.currency and position.realized_pnl != 0:
            # realized_pnl is in the instrument's currency: a new currency would relabel it
            self._refuse(event, f"{event.instrument} has realized PnL in {known.currency}: its currency cannot change")
        self.instruments[event.instrument] = new

    def _on_deposit(self, event: CashDeposited) -> None:
        self.cash[event.currency] = self.cash.get(event.currency, ZERO) + event.amount

    def _on_withdrawal(self, event: CashWithdrawn) -> None:
        self.cash[event.currency] = self.cash.get(event.currency, ZERO) - event.amount

    def _on_fx_rate(self, event: FxRateUpdated) -> None:
        if event.currency == self.base_currency:
            self._refuse(event, f"{event.currency} is the base currency: its rate is 1 by definition")
        self.fx_rates[event.currency] = event.rate

    def _on_mark(self, event: MarkPriceUpdated) -> None:
        if event.instrument not in self.instruments:
            self._refuse(event, f"unknown instrument {event.instrument!r}")
        self.marks[event.instrument] = event.price

    def _on_signal(self, event: StrategySignalEvent | SignalDenied) -> None:
        """A signal is an intention, and its refusal leaves nothing open: neither changes the state."""

    def _on_requested(self, event: OrderRequested) -> None:
        if event.instrument not in self.instruments:
            self._refuse(event, f"unknown instrument {event.instrument!r}")
        if event.order_id in self.open_orders:
            self._refuse(event, f"order {event.order_id!r} is already open")
        self.open_orders[event.order_id] = OpenOrder(event.instrument, event.side, event.quantity,
                                                     event.limit_price, "requested",
                                                     reference_price=event.reference_price,
                                                     emergency_exit=event.emergency_exit)
        recent = self.recent_orders.get(event.instrument, ()) + (event.occurred_at,)
        self.recent_orders[event.instrument] = recent[-RECENT_ORDERS_KEPT:]

    def _order(self, event: DomainEvent, order_id: str, allowed: tuple[str, ...]) -> OpenOrder:
        order = self.open_orders.get(order_id)
        if order is None:
            self._refuse(event, f"order {order_id!r} is not open")
        if order.status not in allowed:
            self._refuse(event, f"order {order_id!r} is {order.status}; {event.type_name} needs {' or '.join(allowed)}")
        return order

    def _on_denied(self, event: OrderDenied) -> None:
        self._order(event, event.order_id, ("requested",))
        del self.open_orders[event.order_id]

    def _on_submitted(self, event: OrderSubmitted) -> None:
        order = self._order(event, event.order_id, ("requested",))
        self.open_orders[event.order_id] = order.with_status("submitted")

    def _on_rejected(self, event: OrderRejected) -> None:
        self._order(event, event.order_id, ("submitted",))
        del self.open_orders[event.order_id]

    def _on_accepted(self, event: OrderAccepted) -> None:
        order = self._order(event, event.order_id, ("submitted",))
        self.open_orders[event.order_id] = order.with_status("accepted")

    def _on_cancelled(self, event: OrderCancelled) -> None:
        self._order(event, event.order_id, ORDER_STATES_ACCEPTING_FILLS)
        del self.open_orders[event.order_id]

    def _on_fill(self, event: _OrderFill) -> None:
        order = self._order(event, event.order_id, ORDER_STATES_ACCEPTING_FILLS)
        filled = order.filled_quantity + event.quantity
        completes = isinstance(event, OrderFilled)
        if completes and filled != order.quantity:
            self._refuse(event, f"OrderFilled brings order {event.order_id!r} to {filled} of {order.quantity}")
        if not completes and filled >= order.quantity:
            self._refuse(event, f"OrderPartiallyFilled brings order {event.order_id!r} to {filled} "
                                f"of {order.quantity}: the completing fill is OrderFilled")
        instrument = self.instruments[order.instrument]
        signed_quantity = order.side.sign * event.quantity
        # Compute everything first, then assign: a failure leaves the state untouched.
        position = _apply_fill(self.positions.get(order.instrument, Position()), signed_quantity, event.price,
                               instrument.multiplier)
        currency, fee, fee_currency = instrument.currency, event.fee, event.fee_currency
        cash = self.cash.get(currency, ZERO) - signed_quantity * event.price * instrument.multiplier
        if fee != 0:
            fee_cash = (cash if fee_currency == currency else self.cash.get(fee_currency, ZERO)) - fee
            fees = self.fees.get(fee_currency, ZERO) + fee
        self.positions[order.instrument] = position
        self.cash[currency] = cash
        if fee != 0:
            self.cash[fee_currency] = fee_cash
            self.fees[fee_currency] = fees
        if completes:
            del self.open_orders[event.order_id]
        else:
            self.open_orders[event.order_id] = order.with_status("partially_filled", filled)

    def _on_trading_state(self, event: TradingStateChanged) -> None:
        self.trading_state = event.state

    def _on_trading_day(self, event: TradingDayStarted) -> None:
        if self.trading_day is not None and event.trading_day <= self.trading_day:
            self._refuse(event, f"trading day {event.trading_day} does not follow {self.trading_day}")
        self.trading_day = event.trading_day
        self.baseline_equity = event.baseline_equity
        if self.trading_state is TradingState.REDUCING:  # the loss-cap latch ends with the day
            self.trading_state = TradingState.ACTIVE

    def _on_cluster_map(self, event: ClusterMapPublished) -> None:
        if event.map_version <= self.cluster_map_version:
            self._refuse(event, f"cluster map version {event.map_version} does not follow {self.cluster_map_version}")
        self.cluster_map_version = event.map_version
        self.clusters = dict(zip(event.instruments, event.clusters))

    # -- valuation (derived; not part of the state or its hash) -----------------------

    def rate(self, currency: str) -> Decimal:
        """Base-currency units per unit of ``currency`` (MissingFxRate when none was recorded)."""
        if currency == self.base_currency:
            return Decimal(1)
        rate = self.fx_rates.get(currency)
        if rate is None:
            raise MissingFxRate(currency)
        return rate

    def mark(self, instrument: str) -> Decimal:
        """The price ``instrument`` is valued at: its last mark, else its last fill price."""
        mark = self.marks.get(instrument)
        if mark is not None:
            return mark
        return self.positions.get(instrument, Position()).last_price

    def valuation(self) -> Valuation:
        """Cash, equity, PnL and exposures in the base currency, per instrument and per asset class."""
        with localcontext(FOLD_CONTEXT):
            instruments: dict[str, InstrumentValuation] = {}
            gross_by_class: dict[str, Decimal] = {}
            net_by_class: dict[str, Decimal] = {}
            for name in sorted(self.positions):
                position, instrument = self.positions[name], self.instruments[name]
                mark = self.mark(name)
                market_value = position.quantity * mark * instrument.multiplier
                unrealized = position.quantity * instrument.multiplier * (mark - position.average_price)
                net = market_value * self.rate(instrument.currency) if market_value else ZERO
                row = InstrumentValuation(name, instrument.asset_class, instrument.currency, position.quantity, mark,
                                          market_value, unrealized, position.realized_pnl, abs(net), net)
                instruments[name] = row
                gross_by_class[row.asset_class] = gross_by_class.get(row.asset_class, ZERO) + row.gross_exposure
                net_by_class[row.asset_class] = net_by_class.get(row.asset_class, ZERO) + row.net_exposure
            cash = sum((amount * self.rate(currency) for currency, amount in sorted(self.cash.items()) if amount),
                       ZERO)
            fees = sum((amount * self.rate(currency) for currency, amount in sorted(self.fees.items()) if amount),
                       ZERO)
            in_base = {name: self.rate(row.currency) for name, row in instruments.items()
                       if row.unrealized_pnl or row.realized_pnl}
            unrealized = sum((row.unrealized_pnl * in_base[name] for name, row in instruments.items()
                              if row.unrealized_pnl), ZERO)
            realized = sum((row.realized_pnl * in_base[name] for name, row in instruments.items()
                            if row.realized_pnl), ZERO)
            net_total = sum((row.net_exposure for row in instruments.values()), ZERO)
            return Valuation(
                base_currency=self.base_currency or "",
                cash=cash,
                equity=cash + net_total,
                unrealized_pnl=unrealized,
                realized_pnl=realized,
                fees=fees,
                gross_exposure=sum((row.gross_exposure for row in instruments.values()), ZERO),
                net_exposure=net_total,
                instruments=instruments,
                gross_by_asset_class=dict(sorted(gross_by_class.items())),
                net_by_asset_class=dict(sorted(net_by_class.items())),
            )

    # -- snapshots and the hash ----------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """The canonical, JSON-ready state (layout ``STATE_SCHEMA_VERSION``): every key sorted, Decimals as strings."""
        d = canonical_decimal
        return {
            "base_currency": self.base_currency,
            "baseline_equity": None if self.baseline_equity is None else d(self.baseline_equity),
            "cash": {c: d(a) for c, a in sorted(self.cash.items())},
            "cluster_map_version": self.cluster_map_version,
            "clusters": dict(sorted(self.clusters.items())),
            "fees": {c: d(a) for c, a in sorted(self.fees.items())},
            "fx_rates": {c: d(r) for c, r in sorted(self.fx_rates.items())},
            "instruments": {name: {"asset_class": i.asset_class, "currency": i.currency,
                                   "lot_size": d(i.lot_size), "multiplier": d(i.multiplier)}
                            for name, i in sorted(self.instruments.items())},
            "marks": {name: d(p) for name, p in sorted(self.marks.items())},
            "open_orders": {oid: {"emergency_exit": o.emergency_exit, "filled_quantity": d(o.filled_quantity),
                                  "instrument": o.instrument,
                                  "limit_price": None if o.limit_price is None else d(o.limit_price),
                                  "quantity": d(o.quantity),
                                  "reference_price": None if o.reference_price is None else d(o.reference_price),
                                  "side": o.side.value, "status": o.status}
                            for oid, o in sorted(self.open_orders.items())},
            "positions": {name: {"average_price": d(p.average_price), "last_price": d(p.last_price),
                                 "quantity": d(p.quantity), "realized_pnl": d(p.realized_pnl)}
                          for name, p in sorted(self.positions.items())},
            "recent_orders": {name: [canonical_time(t) for t in times]
                              for name, times in sorted(self.recent_orders.items())},
            "trading_day": None if self.trading_day is None else self.trading_day.isoformat(),
            "trading_state": self.trading_state.value,
            "version": self.version,
        }

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> PortfolioState:
        """The state a ``to_snapshot()`` dict describes (ValueError/KeyError if it is not one)."""
        D = Decimal
        self = cls()
        self.version = int(state["version"])
        self.base_currency = state["base_currency"]
        self.cash = {c: D(a) for c, a in state["cash"].items()}
        self.fees = {c: D(a) for c, a in state["fees"].items()}
        self.fx_rates = {c: D(r) for c, r in state["fx_rates"].items()}
        self.instruments = {name: Instrument(i["asset_class"], i["currency"], D(i["multiplier"]), D(i["lot_size"]))
                            for name, i in state["instruments"].items()}
        self.marks = {name: D(p) for name, p in state["marks"].items()}
        self.open_orders = {oid: OpenOrder(o["instrument"], Side(o["side"]), D(o["quantity"]),
                                           None if o["limit_price"] is None else D(o["limit_price"]),
                                           o["status"], D(o["filled_quantity"]),
                                           None if o["reference_price"] is None else D(o["reference_price"]),
                                           bool(o["emergency_exit"]))
                            for oid, o in state["open_orders"].items()}
        self.positions = {name: Position(D(p["quantity"]), D(p["average_price"]), D(p["realized_pnl"]),
                                         D(p["last_price"]))
                          for name, p in state["positions"].items()}
        self.trading_state = TradingState(state["trading_state"])
        self.trading_day = None if state["trading_day"] is None else date.fromisoformat(state["trading_day"])
        self.baseline_equity = None if state["baseline_equity"] is None else D(state["baseline_equity"])
        self.cluster_map_version = int(state["cluster_map_version"])
        self.clusters = dict(state["clusters"])
        self.recent_orders = {name: tuple(datetime.fromisoformat(t) for t in times)
                              for name, times in state["recent_orders"].items()}
        return self

    def state_hash(self) -> str:
        """sha256 (hex) of the canonical serialization: same events, same hash, on any machine."""
        text = json.dumps(self.to_snapshot(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortfolioState) and self.to_snapshot() == other.to_snapshot()

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"PortfolioState(version={self.version}, base={self.base_currency}, "
                f"positions={len(self.positions)}, open_orders={len(self.open_orders)})")


def _apply_fill(position: Position, signed_fill: Decimal, price: Decimal, multiplier: Decimal) -> Position:
    """The position after a fill of ``signed_fill`` units at ``price`` (rules in the module docstring)."""
    quantity, average, realized = position.quantity, position.average_price, position.realized_pnl
    if quantity == 0 or (quantity > 0) == (signed_fill > 0):
        size = abs(quantity)
        average = (average * size + price * abs(signed_fill)) / (size + abs(signed_fill))
        return Position(quantity + signed_fill, average, realized, price)
    closed = min(abs(signed_fill), abs(quantity))
    direction = 1 if quantity > 0 else -1
    realized += closed * multiplier * (price - average) * direction
    remaining = abs(signed_fill) - closed
    if remaining > 0:  # flip: the open leg starts at the fill price
        return Position(-direction * remaining, price, realized, price)
    quantity += signed_fill
    return Position(quantity, average if quantity != 0 else ZERO, realized, price)


_HANDLERS = {
    PortfolioOpened: PortfolioState._on_opened,
    InstrumentRegistered: PortfolioState._on_instrument,
    CashDeposited: PortfolioState._on_deposit,
    CashWithdrawn: PortfolioState._on_withdrawal,
    FxRateUpdated: PortfolioState._on_fx_rate,
    MarkPriceUpdated: PortfolioState._on_mark,
    StrategySignalEvent: PortfolioState._on_signal,
    SignalDenied: PortfolioState._on_signal,
    OrderRequested: PortfolioState._on_requested,
    OrderDenied: PortfolioState._on_denied,
    OrderSubmitted: PortfolioState._on_submitted,
    OrderRejected: PortfolioState._on_rejected,
    OrderAccepted: PortfolioState._on_accepted,
    OrderCancelled: PortfolioState._on_cancelled,
    OrderPartiallyFilled: PortfolioState._on_fill,
    OrderFilled: PortfolioState._on_fill,
    TradingStateChanged: PortfolioState._on_trading_state,
    TradingDayStarted: PortfolioState._on_trading_day,
    ClusterMapPublished: PortfolioState._on_cluster_map,
}
