"""The eventsourcing-library baseline of scripts/bench.py §4: one aggregate rebuilt from N events.

``BenchPortfolio`` is an ``eventsourcing.domain.Aggregate`` whose events carry the
same payload fields as the Finam trading events (decimals as strings; the
library's own ``timestamp`` stands for ``occurred_at``), and whose ``apply``
methods do the same bookkeeping as ``PortfolioState`` (marks, the order state
machine, average price, realized PnL, cash and fees in ``Decimal``). Explicit
event classes with ``apply`` are used, the library's leanest replay path.

Kept in its own module so that the events' topics (``bench_eventsourcing:…``)
resolve wherever the aggregate is rebuilt.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

ZERO = Decimal(0)


class BenchPortfolio(Aggregate):
    """A portfolio as an eventsourcing aggregate: the same facts as the Finam stream."""

    def __init__(self, base_currency: str) -> None:
        self.base_currency = base_currency
        self.instruments: dict[str, tuple[str, str, Decimal]] = {}
        self.cash: dict[str, Decimal] = {}
        self.fees: dict[str, Decimal] = {}
        self.marks: dict[str, Decimal] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # quantity, average, realized

    class CashDeposited(Aggregate.Event):
        currency: str
        amount: str

        def apply(self, aggregate: BenchPortfolio) -> None:
            aggregate.cash[self.currency] = aggregate.cash.get(self.currency, ZERO) + Decimal(self.amount)

    class InstrumentRegistered(Aggregate.Event):
        instrument: str
        asset_class: str
        currency: str
        multiplier: str

        def apply(self, aggregate: BenchPortfolio) -> None:
            aggregate.instruments[self.instrument] = (self.asset_class, self.currency, Decimal(self.multiplier))

    class MarkPriceUpdated(Aggregate.Event):
        instrument: str
        price: str

        def apply(self, aggregate: BenchPortfolio) -> None:
            if self.instrument not in aggregate.instruments:
                raise ValueError(f"unknown instrument {self.instrument}")
            aggregate.marks[self.instrument] = Decimal(self.price)

    class OrderRequested(Aggregate.Event):
        order_id: str
        instrument: str
        side: str
        quantity: str
        limit_price: str | None
        strategy: str | None

        def apply(self, aggregate: BenchPortfolio) -> None:
            if self.instrument not in aggregate.instruments or self.order_id in aggregate.orders:
                raise ValueError(f"order {self.order_id} does not fit")
            aggregate.orders[self.order_id] = {
                "instrument": self.instrument, "sign": 1 if self.side == "buy" else -1,
                "quantity": Decimal(self.quantity),
                "limit_price": None if self.limit_price is None else Decimal(self.limit_price),
                "status": "requested", "filled": ZERO}

    class OrderSubmitted(Aggregate.Event):
        order_id: str

        def apply(self, aggregate: BenchPortfolio) -> None:
            order = aggregate.orders[self.order_id]
            if order["status"] != "requested":
                raise ValueError(f"order {self.order_id} is {order['status']}")
            order["status"] = "submitted"

    class OrderAccepted(Aggregate.Event):
        order_id: str
        venue_order_id: str | None

        def apply(self, aggregate: BenchPortfolio) -> None:
            order = aggregate.orders[self.order_id]
            if order["status"] != "submitted":
                raise ValueError(f"order {self.order_id} is {order['status']}")
            order["status"] = "accepted"

    class OrderPartiallyFilled(Aggregate.Event):
        order_id: str
        fill_id: str
        quantity: str
        price: str
        fee: str
        fee_currency: str | None

        def apply(self, aggregate: BenchPortfolio) -> None:
            aggregate.fill(self, completes=False)

    class OrderFilled(OrderPartiallyFilled):
        def apply(self, aggregate: BenchPortfolio) -> None:
            aggregate.fill(self, completes=True)

    def fill(self, event: OrderPartiallyFilled, *, completes: bool) -> None:
        """The same accounting as PortfolioState._on_fill / _apply_fill (average, realized, cash, fees)."""
        order = self.orders[event.order_id]
        if order["status"] not in ("submitted", "accepted", "partially_filled"):
            raise ValueError(f"order {event.order_id} is {order['status']}")
        quantity, price, fee = Decimal(event.quantity), Decimal(event.price), Decimal(event.fee)
        filled = order["filled"] + quantity
        if (filled == order["quantity"]) != completes:
            raise ValueError(f"fill {event.fill_id} does not fit order {event.order_id}")
        _, currency, multiplier = self.instruments[order["instrument"]]
        signed = order["sign"] * quantity
        held, average, realized = self.positions.get(order["instrument"], (ZERO, ZERO, ZERO))
        if held == 0 or (held > 0) == (signed > 0):
            average = (average * abs(held) + price * quantity) / (abs(held) + quantity)
            held += signed
        else:
            closed = min(quantity, abs(held))
            direction = 1 if held > 0 else -1
            realized += closed * multiplier * (price - average) * direction
            if quantity > closed:
                held, average = -direction * (quantity - closed), price
            else:
                held += signed
                average = average if held != 0 else ZERO
        self.positions[order["instrument"]] = (held, average, realized)
        self.cash[currency] = self.cash.get(currency, ZERO) - signed * price * multiplier
        if fee != 0:
            self.cash[event.fee_currency] = self.cash.get(event.fee_currency, ZERO) - fee
            self.fees[event.fee_currency] = self.fees.get(event.fee_currency, ZERO) + fee
        if completes:
            del self.orders[event.order_id]
        else:
            order["status"], order["filled"] = "partially_filled", filled


EVENT_CLASSES = {name: getattr(BenchPortfolio, name) for name in (
    "CashDeposited", "InstrumentRegistered", "MarkPriceUpdated", "OrderRequested", "OrderSubmitted",
    "OrderAccepted", "OrderPartiallyFilled", "OrderFilled")}

#: The fields each event class carries (a payload field the Finam class added later, at its default, is left out).
EVENT_FIELDS = {cls: {f.name for f in dataclasses.fields(cls)} for cls in EVENT_CLASSES.values()}


class BenchApplication(Application):
    """A plain eventsourcing Application (no snapshotting, no aggregate cache)."""


def store_portfolio(app: Application, base_currency: str, events: Iterable[tuple[str, dict[str, Any]]],
                    save_every: int = 1000) -> UUID:
    """Create one BenchPortfolio and store it with ``events`` ((type name, fields incl. 'timestamp')),
    saving every ``save_every`` events; returns the aggregate id. Fields the event class does not
    declare are dropped."""
    portfolio = BenchPortfolio(base_currency=base_currency)
    for name, fields in events:
        cls = EVENT_CLASSES[name]
        portfolio.trigger_event(cls, **{key: value for key, value in fields.items() if key in EVENT_FIELDS[cls]})
        if len(portfolio.pending_events) >= save_every:
            app.save(portfolio)
    app.save(portfolio)
    return portfolio.id
