"""Trading events: the facts a portfolio stream records, one class per state-machine step.

Pure domain code. Every event of a portfolio goes to its stream
(``portfolio-<id>``), so replaying that stream in version order rebuilds the
portfolio. The order events map one-to-one to the order state machine
(NautilusTrader's naming: a local risk refusal is ``OrderDenied``, a venue's is
``OrderRejected``)::

    StrategySignalEvent ──► SignalDenied                             (could not be sized: no order)
          └───────────► OrderRequested (+ the risk decision in the same append)
    OrderRequested ──► OrderDenied                                   (pre-trade risk said no: terminal)
          └──────────► OrderSubmitted ──► OrderRejected             (the venue said no: terminal)
                             ├──────────► OrderAccepted
                             └─► (accepted or not yet) OrderPartiallyFilled* ──► OrderFilled   (terminal)
                                                              └──► OrderCancelled              (terminal)

Amounts, prices and quantities are Decimal; quantities are positive and the side
says the direction. Prices may be zero or negative (some instruments trade there).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from .contract import DomainEvent, EventRegistry
from .errors import InvalidArgument

#: The registry of every trading event type (stored ``type`` = class name).
TRADING_EVENTS = EventRegistry()

MAX_CODE_LENGTH = 200


class Side(str, enum.Enum):
    """Direction of an order or fill."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is Side.BUY else -1


def _require_code(event: DomainEvent, name: str, value: str) -> None:
    if not value or not value.strip() or len(value) > MAX_CODE_LENGTH:
        raise InvalidArgument(f"invalid argument: {event.type_name}.{name} must be a non-empty code "
                              f"of at most {MAX_CODE_LENGTH} characters, got {value!r}")


def _require_currency(event: DomainEvent, name: str, value: str) -> None:
    if len(value) != 3 or not value.isalpha() or not value.isupper():
        raise InvalidArgument(f"invalid argument: {event.type_name}.{name} must be a three-letter "
                              f"upper-case currency code, got {value!r}")


def _require_positive(event: DomainEvent, name: str, value: Decimal) -> None:
    if value <= 0:
        raise InvalidArgument(f"invalid argument: {event.type_name}.{name} must be positive, got {value}")


# -- portfolio set-up and reference data ------------------------------------------

@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class PortfolioOpened(DomainEvent):
    """The portfolio exists and reports in ``base_currency``. Always the stream's first event."""

    base_currency: str

    def validate(self) -> None:
        _require_currency(self, "base_currency", self.base_currency)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class InstrumentRegistered(DomainEvent):
    """The portfolio may trade ``instrument``: priced in ``currency``, one unit = ``multiplier`` units of price,
    traded in whole multiples of ``lot_size`` units."""

    instrument: str
    asset_class: str
    currency: str
    multiplier: Decimal = Decimal(1)
    lot_size: Decimal = Decimal(1)

    def validate(self) -> None:
        _require_code(self, "instrument", self.instrument)
        _require_code(self, "asset_class", self.asset_class)
        _require_currency(self, "currency", self.currency)
        _require_positive(self, "multiplier", self.multiplier)
        _require_positive(self, "lot_size", self.lot_size)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class CashDeposited(DomainEvent):
    """``amount`` of ``currency`` was paid into the portfolio."""

    currency: str
    amount: Decimal

    def validate(self) -> None:
        _require_currency(self, "currency", self.currency)
        _require_positive(self, "amount", self.amount)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class CashWithdrawn(DomainEvent):
    """``amount`` of ``currency`` was paid out of the portfolio."""

    currency: str
    amount: Decimal

    def validate(self) -> None:
        _require_currency(self, "currency", self.currency)
        _require_positive(self, "amount", self.amount)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class FxRateUpdated(DomainEvent):
    """One unit of ``currency`` is worth ``rate`` units of the portfolio's base currency from now on."""

    currency: str
    rate: Decimal

    def validate(self) -> None:
        _require_currency(self, "currency", self.currency)
        _require_positive(self, "rate", self.rate)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class MarkPriceUpdated(DomainEvent):
    """The price positions in ``instrument`` are valued at from now on."""

    instrument: str
    price: Decimal

    def validate(self) -> None:
        _require_code(self, "instrument", self.instrument)


# -- strategy and orders ----------------------------------------------------------

@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class StrategySignalEvent(DomainEvent):
    """A strategy wants to trade (the seed's entry point). It changes no state by itself:
    the trading engine reacts with ``OrderRequested`` and a risk decision.

    Either ``quantity`` asks a fixed size, or ``stop_price`` lets the risk engine size the
    order (fixed fraction of equity risked against the stop distance). ``reference_price``
    is the price the strategy saw (used for sizing and paper fills when there is no
    limit). ``emergency_exit`` marks an order that only reduces risk and may pass a HALT.
    """

    strategy: str
    instrument: str
    side: Side
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    reference_price: Decimal | None = None
    stop_price: Decimal | None = None
    emergency_exit: bool = False

    def validate(self) -> None:
        _require_code(self, "strategy", self.strategy)
        _require_code(self, "instrument", self.instrument)
        if self.quantity is None and self.stop_price is None:
            raise InvalidArgument("invalid argument: StrategySignalEvent needs a quantity or a stop_price to size by")
        if self.quantity is not None:
            _require_positive(self, "quantity", self.quantity)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class SignalDenied(DomainEvent):
    """A signal could not become an order (e.g. no price to size it by, or it sizes to zero lots).
    No order exists, so nothing else changes; ``reason_codes`` are machine-readable."""

    signal_id: UUID
    reason_codes: tuple[str, ...]
    detail: str = ""
    risk_config_hash: str | None = None

    def validate(self) -> None:
        if not self.reason_codes:
            raise InvalidArgument("invalid argument: SignalDenied.reason_codes must name at least one reason")
        for code in self.reason_codes:
            _require_code(self, "reason_codes", code)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderRequested(DomainEvent):
    """An order was created (not yet risk-checked): ``quantity`` of ``instrument`` on ``side``.
    ``reference_price`` is the price it was sized at; ``emergency_exit`` as on the signal."""

    order_id: str
    instrument: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None = None
    strategy: str | None = None
    reference_price: Decimal | None = None
    emergency_exit: bool = False

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)
        _require_code(self, "instrument", self.instrument)
        _require_positive(self, "quantity", self.quantity)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderDenied(DomainEvent):
    """The local pre-trade risk check refused the order (terminal). ``reason_codes`` are machine-readable;
    ``risk_config_hash`` names the risk configuration that decided."""

    order_id: str
    reason_codes: tuple[str, ...]
    detail: str = ""
    risk_config_hash: str | None = None

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)
        if not self.reason_codes:
            raise InvalidArgument("invalid argument: OrderDenied.reason_codes must name at least one reason")
        for code in self.reason_codes:
            _require_code(self, "reason_codes", code)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderSubmitted(DomainEvent):
    """The order passed the risk check (under ``risk_config_hash``) and was sent to the venue."""

    order_id: str
    risk_config_hash: str | None = None

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderRejected(DomainEvent):
    """The venue refused the order (terminal)."""

    order_id: str
    reason: str

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)
        _require_code(self, "reason", self.reason)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderAccepted(DomainEvent):
    """The venue acknowledged the order; it is working there."""

    order_id: str
    venue_order_id: str | None = None

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)


@dataclass(frozen=True, kw_only=True)
class _OrderFill(DomainEvent):
    """A fill: ``quantity`` at ``price`` on the order's side, with ``fee`` charged in ``fee_currency``."""

    order_id: str
    fill_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)
    fee_currency: str | None = None

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)
        _require_code(self, "fill_id", self.fill_id)
        _require_positive(self, "quantity", self.quantity)
        if self.fee != 0 and self.fee_currency is None:
            raise InvalidArgument(f"invalid argument: {self.type_name}.fee_currency is required when fee is not 0")
        if self.fee_currency is not None:
            _require_currency(self, "fee_currency", self.fee_currency)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderPartiallyFilled(_OrderFill):
    """Part of the order was filled; some quantity remains working."""


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderFilled(_OrderFill):
    """The fill that completes the order (terminal)."""


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class OrderCancelled(DomainEvent):
    """The order's remaining quantity was cancelled (terminal); earlier fills stand."""

    order_id: str
    reason: str = "cancelled"

    def validate(self) -> None:
        _require_code(self, "order_id", self.order_id)
        _require_code(self, "reason", self.reason)


# -- trading state, the trading day, correlation clusters -----------------------------

class TradingState(str, enum.Enum):
    """What new orders may do: ACTIVE (anything the limits allow), REDUCING (only orders that
    reduce exposure: the daily loss cap was hit), HALTED (manual kill switch: nothing but cancels
    and orders flagged as emergency exits)."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class TradingStateChanged(DomainEvent):
    """The portfolio's trading state is now ``state``, for ``reason`` (a machine-readable code)."""

    state: TradingState
    reason: str

    def validate(self) -> None:
        _require_code(self, "reason", self.reason)


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class TradingDayStarted(DomainEvent):
    """A new trading day: the daily loss is measured from ``baseline_equity`` (base currency, equity
    including unrealized PnL, after fees, at the day boundary). A REDUCING state latched by the
    previous day's loss cap returns to ACTIVE; HALTED stays."""

    trading_day: date
    baseline_equity: Decimal


@TRADING_EVENTS.register
@dataclass(frozen=True, kw_only=True)
class ClusterMapPublished(DomainEvent):
    """Version ``map_version`` of the correlation clusters: ``instruments[i]`` belongs to ``clusters[i]``.
    Computed offline from price history; the risk engine caps gross exposure per cluster."""

    map_version: int
    instruments: tuple[str, ...]
    clusters: tuple[str, ...]

    def validate(self) -> None:
        if self.map_version < 1:
            raise InvalidArgument("invalid argument: ClusterMapPublished.map_version must be at least 1")
        if len(self.instruments) != len(self.clusters):
            raise InvalidArgument("invalid argument: ClusterMapPublished needs one cluster per instrument")
        if len(set(self.instruments)) != len(self.instruments):
            raise InvalidArgument("invalid argument: ClusterMapPublished lists an instrument twice")
        for instrument, cluster in zip(self.instruments, self.clusters):
            _require_code(self, "instruments", instrument)
            _require_code(self, "clusters", cluster)
