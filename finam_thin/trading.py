"""TradingEngine (seed: ``execution/trading_engine.py``): signals become risk-checked orders, orders become fills.

Application code: it reads portfolio state and returns events for the EventBus to
append; it never writes by itself and never reads the clock (the event time of
the triggering event is "now").

- ``TradingEngine.on_event`` (subscribe as ``trading-engine``):
  * the first event of a new UTC trading day records ``TradingDayStarted`` with the
    equity at that moment as the day's baseline (no baseline when equity cannot be
    valued — the risk engine then fails closed with NO_BASELINE);
  * a ``StrategySignalEvent`` is sized and checked by the ``PreTradeRiskEngine``
    against the portfolio as it stands, and recorded as ``OrderRequested`` with
    ``OrderSubmitted`` (approved) or ``OrderDenied`` (reason codes, config hash) in
    one append — or ``SignalDenied`` when it cannot be sized; when the daily loss
    cap is breached while ACTIVE, ``TradingStateChanged(REDUCING)`` comes first.
- ``TradingEngine.on_submitted`` (subscribe as ``execution``): hands every submitted
  order to the ``ExecutionAdapter`` and records what the venue answered.

Every output is appended with the stream's version as the expected version, so
a decision is always about the state it was computed from — the portfolio at its
head when the handler runs (the bus re-runs the handler on a conflict) — and every
output id derives from its cause, so re-running after a crash is an idempotent
no-op. With the in-process bus the handler runs right after each publish, so the
same inputs give the same decisions; an engine following from another process
decides on whatever the stream holds when it catches up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Protocol

from .bus import Append, EventBus
from .contract import DomainEvent, RecordedEvent
from .errors import FinamError
from .events import (
    MarkPriceUpdated,
    OrderAccepted,
    OrderDenied,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderRequested,
    OrderSubmitted,
    Side,
    SignalDenied,
    StrategySignalEvent,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
)
from .portfolio import FOLD_CONTEXT, OpenOrder, PortfolioState
from .repository import PORTFOLIO_CATEGORY, PortfolioRepository
from .risk import OrderIntent, PreTradeRiskEngine

CENT = Decimal("0.01")
BASIS_POINT = Decimal("0.0001")


class ExecutionAdapter(Protocol):
    """What a venue connection provides: the venue's answer to a submitted order, as events.

    Ids must derive from ``submitted`` (``Event.derived_from(submitted, step, ...)``)
    so that asking again after a crash returns the same events.
    """

    def execute(self, order_id: str, order: OpenOrder, submitted: OrderSubmitted,
                state: PortfolioState) -> Sequence[DomainEvent]:
        ...


@dataclass(frozen=True)
class PaperExecution:
    """A deterministic paper venue: accepts every order it can price and fills it at once.

    Price: the limit price, else the order's reference price, else the mark;
    none of them → ``OrderRejected("NO_PRICE")``. Slippage moves the price against
    the order by ``slippage_bps`` (never beyond a limit). Fee: ``fee_bps`` of the
    notional plus ``fee_per_order``, in the instrument's currency, rounded to the
    cent. With ``partial_fill_ratio`` the order fills in two parts: that share of
    the quantity (rounded down to the lot size), then the rest; otherwise in one.
    """

    slippage_bps: Decimal = Decimal(0)
    fee_bps: Decimal = Decimal(0)
    fee_per_order: Decimal = Decimal(0)
    partial_fill_ratio: Decimal | None = None

    def execute(self, order_id: str, order: OpenOrder, submitted: OrderSubmitted,
                state: PortfolioState) -> list[DomainEvent]:
        instrument = state.instruments[order.instrument]
        price = order.limit_price or order.reference_price or state.marks.get(order.instrument)
        if price is None:
            return [OrderRejected.derived_from(submitted, "reject", order_id=order_id, reason="NO_PRICE")]
        with localcontext(FOLD_CONTEXT):
            slipped = price * (1 + order.side.sign * self.slippage_bps * BASIS_POINT)
            if order.limit_price is not None:
                slipped = min(slipped, order.limit_price) if order.side is Side.BUY else max(slipped, order.limit_price)
            slipped = slipped.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
            legs = [order.remaining]
            if self.partial_fill_ratio is not None:
                first = (order.remaining * self.partial_fill_ratio / instrument.lot_size).to_integral_value(
                    rounding=ROUND_DOWN) * instrument.lot_size
                if 0 < first < order.remaining:
                    legs = [first, order.remaining - first]
            events: list[DomainEvent] = [OrderAccepted.derived_from(submitted, "accept", order_id=order_id,
                                                                     venue_order_id=f"PAPER-{order_id}")]
            for index, quantity in enumerate(legs, 1):
                notional = abs(quantity * slipped * instrument.multiplier)
                fee = (notional * self.fee_bps * BASIS_POINT).quantize(CENT, rounding=ROUND_HALF_EVEN)
                if index == 1:
                    fee += self.fee_per_order
                kind = OrderFilled if index == len(legs) else OrderPartiallyFilled
                events.append(kind.derived_from(submitted, f"fill-{index}", order_id=order_id, fill_id=f"F{index}",
                                                quantity=quantity, price=slipped, fee=fee,
                                                fee_currency=instrument.currency if fee else None))
        return events


class TradingEngine:
    """Turns signals into risk-checked orders and submitted orders into the venue's answers."""

    def __init__(self, repository: PortfolioRepository, risk: PreTradeRiskEngine,
                 execution: ExecutionAdapter) -> None:
        self.repository = repository
        self.risk = risk
        self.execution = execution
        self._states: dict[str, PortfolioState] = {}

    def subscribe(self, bus: EventBus, *, stream: str | None = None, from_end: bool = False) -> None:
        """Subscribe both handlers (``trading-engine`` then ``execution``) to every portfolio stream —
        or to one ``stream`` only (names suffixed ``:<stream>``), starting at its events from now on
        with ``from_end``."""
        suffix = f":{stream}" if stream else ""
        scope = {"stream": stream} if stream else {"category": PORTFOLIO_CATEGORY}
        bus.subscribe(f"trading-engine{suffix}", self.on_event, from_end=from_end, **scope)
        bus.subscribe(f"execution{suffix}", self.on_submitted, from_end=from_end, **scope)

    def state(self, stream: str) -> PortfolioState:
        """The portfolio at its stream's head (kept in memory; only new events are read)."""
        state = self._states.get(stream)
        if state is None:
            state = self.repository.load(stream)
        else:
            try:
                state = self.repository.replay_onto(state, stream)
            except FinamError:
                state = self.repository.load(stream)
        self._states[stream] = state
        return state

    # -- signals and the trading day ------------------------------------------------------

    def on_event(self, recorded: RecordedEvent) -> Append | None:
        event = recorded.event
        if not isinstance(event, (StrategySignalEvent, MarkPriceUpdated)):
            return None  # only market data and signals start a trading day; only signals make orders
        state = self.state(recorded.stream)
        if recorded.version > state.version:  # not visible to this reader yet: the bus will call again
            raise RuntimeError(f"{recorded.stream} version {recorded.version} is not readable yet")
        outputs: list[DomainEvent] = []
        day = event.occurred_at.date()
        if state.base_currency is not None and (state.trading_day is None or day > state.trading_day):
            baseline = self._equity(state)
            if baseline is not None:
                outputs.append(TradingDayStarted.derived_from(event, "trading-day", trading_day=day,
                                                              baseline_equity=baseline))
                projected = PortfolioState.from_snapshot(state.to_snapshot())
                state = projected.apply(outputs[-1])
        if isinstance(event, StrategySignalEvent):
            outputs += self._decide(event, state)
        if not outputs:
            return None
        return Append(recorded.stream, outputs, expected_version=self._states[recorded.stream].version)

    def _decide(self, signal: StrategySignalEvent, state: PortfolioState) -> list[DomainEvent]:
        config_hash = self.risk.config.config_hash
        outputs: list[DomainEvent] = []
        if state.trading_state is TradingState.ACTIVE and self.risk.loss_cap_breached(state):
            outputs.append(TradingStateChanged.derived_from(signal, "loss-cap", state=TradingState.REDUCING,
                                                            reason="DAILY_LOSS_CAP"))
        sizing = self.risk.size(state, signal)
        if sizing.quantity is None:
            return outputs + [SignalDenied.derived_from(signal, "deny", signal_id=signal.event_id,
                                                        reason_codes=sizing.reason_codes, detail=sizing.detail,
                                                        risk_config_hash=config_hash)]
        order_id = f"O-{signal.event_id}"
        reference = signal.reference_price or signal.limit_price or state.marks.get(signal.instrument)
        request = OrderRequested.derived_from(signal, "order", order_id=order_id, instrument=signal.instrument,
                                              side=signal.side, quantity=sizing.quantity,
                                              limit_price=signal.limit_price, strategy=signal.strategy,
                                              reference_price=reference, emergency_exit=signal.emergency_exit)
        decision = self.risk.check(state, OrderIntent(signal.instrument, signal.side, sizing.quantity,
                                                      signal.limit_price, reference, signal.emergency_exit),
                                   now=signal.occurred_at)
        if decision.approved:
            verdict: DomainEvent = OrderSubmitted.derived_from(signal, "submit", order_id=order_id,
                                                               risk_config_hash=decision.config_hash)
        else:
            verdict = OrderDenied.derived_from(signal, "deny", order_id=order_id, reason_codes=decision.reason_codes,
                                               detail=decision.detail, risk_config_hash=decision.config_hash)
        return outputs + [request, verdict]

    def _equity(self, state: PortfolioState) -> Decimal | None:
        try:
            return state.valuation().equity
        except FinamError:
            return None

    # -- execution -------------------------------------------------------------------

    def on_submitted(self, recorded: RecordedEvent) -> Append | None:
        submitted = recorded.event
        if not isinstance(submitted, OrderSubmitted):
            return None
        state = self.state(recorded.stream)
        order = state.open_orders.get(submitted.order_id)
        if order is None or order.status != "submitted":
            return None  # already answered (a re-run after a crash, or a cancel came first)
        events = self.execution.execute(submitted.order_id, order, submitted, state)
        return Append(recorded.stream, list(events), expected_version=state.version) if events else None

