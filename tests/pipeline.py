"""A small trading pipeline for the bus and restart tests: deterministic inputs and two reacting handlers.

- ``inputs(n)``: a portfolio's originating events with fixed ids (uuid5 of a
  namespace and the index), so publishing them again after a restart is an
  idempotent no-op.
- ``order_desk``: StrategySignalEvent → OrderRequested (derived id).
- ``venue``: OrderRequested → OrderSubmitted, OrderAccepted, OrderPartiallyFilled, OrderFilled.

Run as a script it is the crash worker of tests/test_restart.py: it publishes
the inputs through an EventBus on $POSTGRES_DSN and, when told, SIGKILLs itself
at a chosen point; it prints the final state as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid5

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from finam_thin.bus import Append, EventBus  # noqa: E402
from finam_thin.contract import RecordedEvent  # noqa: E402
from finam_thin.events import (  # noqa: E402
    CashDeposited,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderAccepted,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRequested,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    StrategySignalEvent,
)

NAMESPACE = UUID("6f1c8f7e-3a53-4d7e-9a57-3f0e1d2c4b5a")
T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
INSTRUMENTS = (("AAPL", "equity", "USD", Decimal(1)), ("SAP", "equity", "EUR", Decimal(1)),
               ("ESZ6", "future", "USD", Decimal(50)))


def inputs(count: int) -> list:
    """``count`` originating events of one portfolio, always the same ones (ids included)."""
    def at(i: int) -> dict:
        return {"occurred_at": T0 + timedelta(seconds=i), "event_id": uuid5(NAMESPACE, f"input-{i}")}

    events = [PortfolioOpened(base_currency="USD", **at(0)),
              CashDeposited(currency="USD", amount=Decimal("1000000"), **at(1)),
              FxRateUpdated(currency="EUR", rate=Decimal("1.08"), **at(2))]
    events += [InstrumentRegistered(instrument=name, asset_class=cls, currency=ccy, multiplier=m, **at(3 + k))
               for k, (name, cls, ccy, m) in enumerate(INSTRUMENTS)]
    i = len(events)
    while len(events) < count:
        name = INSTRUMENTS[i % len(INSTRUMENTS)][0]
        if i % 4 == 0:
            events.append(MarkPriceUpdated(instrument=name, price=Decimal(100 + i % 17) + Decimal("0.25"), **at(i)))
        else:
            side = Side.BUY if (i // 3) % 3 else Side.SELL
            events.append(StrategySignalEvent(strategy="test", instrument=name, side=side,
                                              quantity=Decimal(1 + i % 5), limit_price=Decimal(100 + i % 13), **at(i)))
        i += 1
    return events[:count]


def order_desk(recorded: RecordedEvent):
    """Turns a strategy signal into an order request (id derived from the signal)."""
    signal = recorded.event
    if isinstance(signal, StrategySignalEvent):
        return Append(recorded.stream, [OrderRequested.derived_from(
            signal, "order", order_id=f"O-{signal.event_id}", instrument=signal.instrument, side=signal.side,
            quantity=signal.quantity, limit_price=signal.limit_price, strategy=signal.strategy)])
    return None


def venue(recorded: RecordedEvent):
    """Fills every requested order in two parts at its limit price, with a fee."""
    order = recorded.event
    if not isinstance(order, OrderRequested):
        return None
    first = (order.quantity / 2).quantize(Decimal("0.1"))
    fill = dict(order_id=order.order_id, price=order.limit_price, fee=Decimal("0.5"), fee_currency="USD")
    return Append(recorded.stream, [
        OrderSubmitted.derived_from(order, "submit", order_id=order.order_id),
        OrderAccepted.derived_from(order, "accept", order_id=order.order_id, venue_order_id=f"V-{order.order_id}"),
        OrderPartiallyFilled.derived_from(order, "fill-1", fill_id="F1", quantity=first, **fill),
        OrderFilled.derived_from(order, "fill-2", fill_id="F2", quantity=order.quantity - first, **fill),
    ])


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    """Crash worker: argv = stream, input count, crash point (none | before-handlers | inside-handler |
    between-handlers), crash input index."""
    from finam_thin.database import create_pool
    from finam_thin.postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
    from finam_thin.repository import PortfolioRepository, SnapshotEveryN

    stream, count, crash_point, crash_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    events = inputs(count)
    crash_id = events[crash_at].event_id

    class CrashingBus(EventBus):
        def _dispatch(self, wait_for):
            if crash_point == "before-handlers" and wait_for is not None and self._published == crash_id:
                _die()  # the event is committed; no handler has seen it
            return super()._dispatch(wait_for)

    def killer(recorded: RecordedEvent):
        if recorded.event.event_id == crash_id:
            _die()

    def crashing_venue(recorded: RecordedEvent):
        output = venue(recorded)
        if crash_point == "inside-handler" and recorded.event.causation_id == crash_id:
            _die()  # the handler ran, its output is not committed
        return output

    with create_pool(os.environ["POSTGRES_DSN"], max_size=4) as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        bus = CrashingBus(store, PostgresCheckpointStore(pool))
        bus._published = None
        bus.subscribe("order-desk", order_desk)
        if crash_point == "between-handlers":
            bus.subscribe("killer", killer)
        bus.subscribe("venue", crashing_venue)
        bus.subscribe("snapshots", SnapshotEveryN(repository, every=7), category="portfolio")
        startup = bus.catch_up()
        for event in events:
            bus._published = event.event_id
            report = bus.publish(stream, event).dispatch
            assert report.ok, report
        state = repository.load(stream)
        print(json.dumps({"hash": state.state_hash(), "version": state.version,
                          "caught_up_on_start": startup.handled}))


if __name__ == "__main__":
    main()
