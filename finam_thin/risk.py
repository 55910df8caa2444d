"""Pre-trade risk: position sizing and the checks every order passes before it is sent (roadmap v1.5, v1.6).

Pure domain code: no database, no clock (``now`` is an argument), no randomness, no floats.
Every computation runs in ``FOLD_CONTEXT`` whatever the caller's Decimal context is, and limits
are compared by multiplication (``value > limit·base``), never through a rounded quotient, so a
value exactly at a limit passes on any machine. The same state, intent, time and configuration
always give the same decision.

The configuration is data (``RiskConfig``: a mapping, a JSON or a TOML file) with a ``version``;
every decision carries ``config_hash`` (sha256 of the canonical configuration), so a recorded
``OrderDenied`` / ``OrderSubmitted`` names the exact rules that decided it.

Every check FAILS CLOSED: what a rule needs and cannot find is a refusal with its own code,
never a pass. Codes (``REASON_CODES`` has the one-line meaning of each):

Sizing — ``size(state, signal)`` (v1.5)
  - No portfolio (``state.base_currency`` is None) → NO_PORTFOLIO; unregistered instrument →
    UNKNOWN_INSTRUMENT.
  - Fixed size: a signal with ``quantity`` asks exactly that many units. It must be a positive
    whole multiple of the instrument's ``lot_size`` (else LOT_SIZE). It is never scaled down:
    ``check()`` denies it if it breaks a cap.
  - Stop sizing (no ``quantity``): ``entry`` = ``limit_price``, else ``reference_price``, else
    the instrument's mark (``state.mark()``: last mark, else last fill price; NO_PRICE when it
    has neither). ``entry == stop`` or a stop on the wrong side (a buy needs stop < entry, a sell
    stop > entry) → INVALID_STOP. Equity (``valuation().equity``, base currency) ≤ 0 → NO_EQUITY.
    A missing FX rate (the instrument's, or any the valuation needs) → NO_FX_RATE. Then::

        raw = equity · risk_fraction / (|entry − stop| · multiplier · rate(currency))
        q   = min(raw, max_order_quantity, max_order_notional / (|entry| · multiplier · rate))
        quantity = floor(q / lot_size) · lot_size                       (0 → ZERO_SIZE)

    The caps apply when configured (the notional one when entry ≠ 0). Divisions round toward
    zero, so the sized order never risks more than the fraction, nor breaks a cap.

Order review — ``check(state, intent, now)``
  Call it on the state BEFORE the order's own ``OrderRequested`` is folded: the intent is added
  to the state's positions and open orders, and ``now`` is the time of the request.
  The decision lists every violated rule: codes sorted and de-duplicated; approved means no code.

  - Prerequisites: NO_PORTFOLIO, then UNKNOWN_INSTRUMENT, end the review (nothing else can be
    assessed). Every order then needs its instrument's price (the mark; NO_PRICE) and its
    currency's FX rate to the base (NO_FX_RATE), whether or not a limit uses them.
  - Direction. The *committed* position of an instrument is its position plus the remaining
    quantity of every open order on it, signed by side. An order REDUCES when the committed
    position is not 0, the order is on the other side, and its quantity is at most the committed
    size (it shrinks or closes the position, never flips it). Every other order INCREASES.
  - Per-order caps (every order): quantity > max_order_quantity → MAX_ORDER_QUANTITY;
    quantity · |mark| · multiplier · rate > max_order_notional → MAX_ORDER_NOTIONAL; quantity
    not a whole multiple of lot_size → LOT_SIZE.
  - Price band (every order with a limit price): |limit − mark| > price_band · |mark| →
    PRICE_BAND (a mark of 0 admits only a limit of 0).
  - Order rate (every order): at least max_orders_per_window times in
    ``state.recent_orders[instrument]`` within (now − order_window_seconds, now] → ORDER_RATE.
  - Trading state: HALTED denies every order (HALTED) except an ``emergency_exit`` order that
    reduces. An increasing order is denied with DAILY_LOSS_CAP when the state is REDUCING, or —
    whatever the state, so it fails closed before the ``TradingStateChanged`` is recorded — when
    the daily loss cap is breached. With a daily_loss_cap configured and no baseline yet (no
    ``TradingDayStarted``), an increasing order is denied with NO_BASELINE. Reducing orders are
    never held back by the loss cap (they only lower risk).
  - Daily loss = baseline_equity − current equity (base currency, unrealized PnL included, after
    fees). The cap is breached when loss ≥ daily_loss_cap · baseline_equity (a baseline ≤ 0
    counts as breached).
  - Exposure limits (only for increasing orders, only when at least one is configured), on the
    PROJECTED portfolio: committed positions plus this order, each valued at its mark in the base
    currency (``mv = quantity · mark · multiplier · rate``; any instrument with a non-zero
    projected quantity must have a price and a rate: NO_PRICE / NO_FX_RATE). Against current
    equity E (≤ 0 → NO_EQUITY), a limit is breached when projected > limit · E (equal passes):
    |mv| of this instrument → INSTRUMENT_EXPOSURE; Σ|mv| over this instrument's asset class
    (limit from max_asset_class_exposure; a class without an entry is unlimited) →
    ASSET_CLASS_EXPOSURE; Σ|mv| → GROSS_EXPOSURE; |Σ mv| → NET_EXPOSURE; Σ|mv| over this
    instrument's correlation cluster (``state.clusters``; an instrument absent from the map is
    its own singleton cluster) → CLUSTER_EXPOSURE. These are portfolio figures: a total already
    over its limit denies any increasing order that the total includes.

``daily_loss(state)`` and ``loss_cap_breached(state)`` expose the loss-cap figures for the
code that records ``TradingStateChanged(REDUCING)``; both raise ``MissingFxRate`` when the
equity cannot be valued.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .contract import canonical_decimal
from .errors import InvalidArgument
from .events import Side, StrategySignalEvent, TradingState
from .portfolio import FOLD_CONTEXT, ZERO, Instrument, MissingFxRate, PortfolioState

#: Every reason code the engine emits, with its meaning.
REASON_CODES: dict[str, str] = {
    "ASSET_CLASS_EXPOSURE": "projected gross exposure of the instrument's asset class would exceed its limit",
    "CLUSTER_EXPOSURE": "projected gross exposure of the instrument's correlation cluster would exceed the limit",
    "DAILY_LOSS_CAP": "the state is REDUCING or the daily loss cap is breached: only reducing orders pass",
    "GROSS_EXPOSURE": "projected gross exposure (sum of |market value|) would exceed the limit",
    "HALTED": "trading is halted: only emergency-exit orders that reduce a position pass",
    "INSTRUMENT_EXPOSURE": "projected |market value| of the instrument would exceed the limit",
    "INVALID_STOP": "the stop price equals the entry price or lies on the wrong side of it",
    "LOT_SIZE": "the quantity is not a positive whole multiple of the instrument's lot size",
    "MAX_ORDER_NOTIONAL": "the order's notional (base currency) exceeds the per-order cap",
    "MAX_ORDER_QUANTITY": "the order's quantity exceeds the per-order cap",
    "NET_EXPOSURE": "projected |net exposure| (|sum of market value|) would exceed the limit",
    "NO_BASELINE": "a daily loss cap is configured but no trading day has set a baseline equity",
    "NO_EQUITY": "equity is zero or negative: nothing can be sized or measured against it",
    "NO_FX_RATE": "a currency involved has no FX rate to the base currency",
    "NO_PORTFOLIO": "the portfolio is not open (no base currency)",
    "NO_PRICE": "an instrument involved has neither a mark nor a fill price",
    "ORDER_RATE": "too many orders on the instrument within the order window",
    "PRICE_BAND": "the limit price is further from the mark than the price band allows",
    "UNKNOWN_INSTRUMENT": "the instrument is not registered in the portfolio",
    "ZERO_SIZE": "the stop-sized quantity rounds down to zero lots",
}


def _code(name: str) -> str:
    """``name`` itself, after checking it is a documented reason code (a typo fails loudly)."""
    if name not in REASON_CODES:
        raise AssertionError(f"undocumented reason code {name!r}")
    return name


# -- configuration ----------------------------------------------------------------------

#: Optional per-order and exposure limits: positive Decimals.
_DECIMAL_LIMITS = ("max_order_quantity", "max_order_notional", "max_instrument_exposure",
                   "max_gross_exposure", "max_net_exposure", "max_cluster_exposure", "daily_loss_cap",
                   "price_band")
_REQUIRED_KEYS = ("version", "risk_fraction")


def _config_error(key: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid argument: risk config {key!r}: {message}")


def _to_decimal(key: str, value: Any) -> Decimal:
    """A finite Decimal from a Decimal, an int or a decimal string; floats are refused (they are inexact)."""
    if isinstance(value, float):
        raise _config_error(key, f"floats are refused (binary floating point is inexact): "
                                 f"write it as a string, e.g. \"{value!r}\"")
    if isinstance(value, bool):
        raise _config_error(key, f"expected a number, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise _config_error(key, f"{value!r} is not a decimal number") from None
    if not isinstance(value, Decimal):
        raise _config_error(key, f"expected a decimal string or an int, got {type(value).__name__}")
    if not value.is_finite():
        raise _config_error(key, f"{value} is not a finite number")
    return value


def _to_int(key: str, value: Any) -> int:
    """An int from an int or a string of digits; floats and fractions are refused."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _config_error(key, f"expected a whole number, got {value!r}")
    return value


@dataclass(frozen=True)
class RiskConfig:
    """A versioned risk configuration. Constructing one validates it (InvalidArgument, FC003, naming the key).

    Fractions are of current equity (exposures) or of the day's baseline equity (``daily_loss_cap``);
    ``None`` (or an absent key) means the limit is not applied. Equal configurations have equal
    ``config_hash`` whatever the order or notation of their keys and numbers.
    """

    version: str
    risk_fraction: Decimal
    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_instrument_exposure: Decimal | None = None
    max_asset_class_exposure: Mapping[str, Decimal] = field(default_factory=dict, hash=False)
    max_gross_exposure: Decimal | None = None
    max_net_exposure: Decimal | None = None
    max_cluster_exposure: Decimal | None = None
    daily_loss_cap: Decimal | None = None
    price_band: Decimal | None = None
    max_orders_per_window: int | None = None
    order_window_seconds: int = 60

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.version, str) or not self.version.strip():
            raise _config_error("version", f"must be a non-empty string, got {self.version!r}")
        fraction = _to_decimal("risk_fraction", self.risk_fraction)
        if not ZERO < fraction <= 1:
            raise _config_error("risk_fraction", f"must be in (0, 1], got {fraction}")
        put("risk_fraction", fraction)
        for name in _DECIMAL_LIMITS:
            value = getattr(self, name)
            if value is None:
                continue
            value = _to_decimal(name, value)
            if value <= 0:
                raise _config_error(name, f"must be positive, got {value}")
            if name == "daily_loss_cap" and value > 1:
                raise _config_error(name, f"is a fraction of the baseline equity: at most 1, got {value}")
            put(name, value)
        put("max_asset_class_exposure", self._asset_class_limits(self.max_asset_class_exposure))
        if self.max_orders_per_window is not None:
            count = _to_int("max_orders_per_window", self.max_orders_per_window)
            if count < 1:
                raise _config_error("max_orders_per_window", f"must be at least 1, got {count}")
            put("max_orders_per_window", count)
        seconds = _to_int("order_window_seconds", self.order_window_seconds)
        if seconds < 1:
            raise _config_error("order_window_seconds", f"must be at least 1, got {seconds}")
        put("order_window_seconds", seconds)

    @staticmethod
    def _asset_class_limits(limits: Any) -> Mapping[str, Decimal]:
        """The per-asset-class limits, validated, as a read-only mapping sorted by class."""
        key = "max_asset_class_exposure"
        if not isinstance(limits, Mapping):
            raise _config_error(key, f"expected a mapping of asset class to limit, got {type(limits).__name__}")
        checked: dict[str, Decimal] = {}
        for asset_class, value in limits.items():
            if not isinstance(asset_class, str) or not asset_class.strip():
                raise _config_error(key, f"asset classes are non-empty strings, got {asset_class!r}")
            limit = _to_decimal(f"{key}.{asset_class}", value)
            if limit <= 0:
                raise _config_error(f"{key}.{asset_class}", f"must be positive, got {limit}")
            checked[asset_class] = limit
        return MappingProxyType(dict(sorted(checked.items())))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RiskConfig:
        """The configuration a mapping describes: numbers as strings, ints or Decimals (floats refused);
        unknown or missing keys are refused (InvalidArgument naming the key)."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"invalid argument: a risk config is a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        for key in sorted(map(str, data)):
            if key not in known:
                raise _config_error(key, f"unknown key (known: {', '.join(sorted(known))})")
        for key in _REQUIRED_KEYS:
            if key not in data:
                raise _config_error(key, "is required")
        values = dict(data)
        if values.get("max_asset_class_exposure") is None:
            values.pop("max_asset_class_exposure", None)
        if values.get("order_window_seconds") is None:
            values.pop("order_window_seconds", None)
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> RiskConfig:
        """The configuration in a ``.json`` or ``.toml`` file. Numbers written with a decimal point
        are read as exact Decimals (never through a float)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidArgument(f"invalid argument: cannot read risk config {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise InvalidArgument(f"invalid argument: risk config {path} is not UTF-8 text ({error})") from None
        try:
            if path.suffix == ".json":
                data = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
            elif path.suffix == ".toml":
                data = tomllib.loads(text, parse_float=Decimal)
            else:
                raise InvalidArgument(f"invalid argument: risk config {path}: expected a .json or .toml file")
        except (ValueError, tomllib.TOMLDecodeError) as error:
            if isinstance(error, InvalidArgument):
                raise
            raise InvalidArgument(f"invalid argument: risk config {path} does not parse: {error}") from None
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        """The canonical, JSON-ready form: every key, Decimals as canonical strings (``from_mapping`` inverts it)."""
        def number(value: Decimal | None) -> str | None:
            return None if value is None else canonical_decimal(value)

        mapping: dict[str, Any] = {"version": self.version, "risk_fraction": number(self.risk_fraction)}
        for name in _DECIMAL_LIMITS:
            mapping[name] = number(getattr(self, name))
        mapping["max_asset_class_exposure"] = {asset_class: number(limit) for asset_class, limit
                                               in sorted(self.max_asset_class_exposure.items())}
        mapping["max_orders_per_window"] = self.max_orders_per_window
        mapping["order_window_seconds"] = self.order_window_seconds
        return dict(sorted(mapping.items()))

    @cached_property
    def config_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of ``to_mapping()`` (sorted keys): same configuration, same hash."""
        text = json.dumps(self.to_mapping(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def exposure_limited(self) -> bool:
        """Whether any exposure limit is configured."""
        return any(limit is not None for limit in (self.max_instrument_exposure, self.max_gross_exposure,
                                                   self.max_net_exposure, self.max_cluster_exposure)) \
            or bool(self.max_asset_class_exposure)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


# -- what is reviewed and decided ---------------------------------------------------------

@dataclass(frozen=True)
class OrderIntent:
    """An order to review: ``quantity`` (> 0) units of ``instrument`` on ``side``, optionally limited."""

    instrument: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None = None
    reference_price: Decimal | None = None
    emergency_exit: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.side, Side):
            raise InvalidArgument(f"invalid argument: OrderIntent.side must be a Side, got {self.side!r}")
        for name in ("quantity", "limit_price", "reference_price"):
            value = getattr(self, name)
            if value is None and name != "quantity":
                continue
            if value.__class__ is not Decimal or not value.is_finite():
                raise InvalidArgument(f"invalid argument: OrderIntent.{name} must be a finite Decimal, got {value!r}")
        if self.quantity <= 0:
            raise InvalidArgument(f"invalid argument: OrderIntent.quantity must be positive, got {self.quantity}")


@dataclass(frozen=True)
class RiskDecision:
    """The outcome of ``check()``: approved iff ``reason_codes`` is empty; ``config_hash`` names the rules."""

    approved: bool
    reason_codes: tuple[str, ...]
    config_hash: str
    detail: str = ""


@dataclass(frozen=True)
class Sizing:
    """The outcome of ``size()``: a quantity, or None with the reason codes of the refusal."""

    quantity: Decimal | None
    reason_codes: tuple[str, ...]
    detail: str = ""


class _Refused(Exception):
    """A figure a rule needs is missing (or a rule is broken): ``code`` and a human ``detail``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = _code(code)
        self.detail = detail


Finding = tuple[str, str]  # (reason code, detail)
_fmt = canonical_decimal


def _price(state: PortfolioState, name: str) -> Decimal:
    """The instrument's mark (last mark, else last fill price); _Refused(NO_PRICE) when it has neither."""
    if name not in state.marks and name not in state.positions:
        raise _Refused("NO_PRICE", f"{name} has neither a mark nor a fill price")
    return state.mark(name)


def _rate(state: PortfolioState, currency: str) -> Decimal:
    """Base-currency units per unit of ``currency``; _Refused(NO_FX_RATE) when no rate was recorded."""
    try:
        return state.rate(currency)
    except MissingFxRate:
        raise _Refused("NO_FX_RATE", f"no FX rate from {currency} to {state.base_currency}") from None


def _equity(state: PortfolioState) -> Decimal:
    """Current equity in the base currency; _Refused(NO_FX_RATE) when a currency cannot be valued."""
    try:
        return state.valuation().equity
    except MissingFxRate as error:
        raise _Refused("NO_FX_RATE", f"equity cannot be valued: no FX rate from {error.currency} "
                                     f"to {state.base_currency}") from None


def _instrument(state: PortfolioState, name: str) -> Instrument:
    """The registered instrument; _Refused(NO_PORTFOLIO / UNKNOWN_INSTRUMENT) first if the portfolio or it is missing."""
    if state.base_currency is None:
        raise _Refused("NO_PORTFOLIO", "the portfolio is not open (no PortfolioOpened)")
    instrument = state.instruments.get(name)
    if instrument is None:
        raise _Refused("UNKNOWN_INSTRUMENT", f"{name!r} is not a registered instrument")
    return instrument


def _is_lot_multiple(quantity: Decimal, lot_size: Decimal) -> bool:
    """Whether ``quantity`` is a positive whole multiple of ``lot_size`` (an unrepresentable ratio is not)."""
    try:
        return quantity > 0 and quantity % lot_size == 0
    except InvalidOperation:
        return False


def _floor_div(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded toward −∞ (a budget divided this way is never overspent)."""
    with localcontext() as context:
        context.rounding = ROUND_FLOOR
        return numerator / denominator


def _committed(state: PortfolioState) -> dict[str, Decimal]:
    """Signed quantity per instrument: the position plus every open order's remaining quantity, by side."""
    committed: dict[str, Decimal] = {}
    for name, position in sorted(state.positions.items()):
        committed[name] = committed.get(name, ZERO) + position.quantity
    for _, order in sorted(state.open_orders.items()):
        committed[order.instrument] = committed.get(order.instrument, ZERO) + order.side.sign * order.remaining
    return committed


def _reduces(committed: Decimal, side: Side, quantity: Decimal) -> bool:
    """Whether an order shrinks or closes the committed position without flipping it."""
    return committed != 0 and (side.sign > 0) != (committed > 0) and quantity <= abs(committed)


@dataclass
class _Review:
    """One check(): the configuration, state, order and time, with the figures the rules share."""

    config: RiskConfig
    state: PortfolioState
    intent: OrderIntent
    instrument: Instrument
    now: datetime

    @cached_property
    def committed(self) -> dict[str, Decimal]:
        return _committed(self.state)

    @cached_property
    def reduces(self) -> bool:
        return _reduces(self.committed.get(self.intent.instrument, ZERO), self.intent.side, self.intent.quantity)


Rule = Callable[[_Review], Iterator[Finding]]


def _rule_priced(review: _Review) -> Iterator[Finding]:
    """Every order needs its instrument's price and its currency's rate (NO_PRICE, NO_FX_RATE)."""
    _price(review.state, review.intent.instrument)
    _rate(review.state, review.instrument.currency)
    return iter(())


def _rule_lot_size(review: _Review) -> Iterator[Finding]:
    """The quantity is a whole multiple of the lot size (LOT_SIZE)."""
    if not _is_lot_multiple(review.intent.quantity, review.instrument.lot_size):
        yield "LOT_SIZE", (f"quantity {_fmt(review.intent.quantity)} is not a multiple of the lot size "
                           f"{_fmt(review.instrument.lot_size)}")


def _rule_order_quantity(review: _Review) -> Iterator[Finding]:
    """quantity ≤ max_order_quantity (MAX_ORDER_QUANTITY)."""
    cap = review.config.max_order_quantity
    if cap is not None and review.intent.quantity > cap:
        yield "MAX_ORDER_QUANTITY", f"quantity {_fmt(review.intent.quantity)} > cap {_fmt(cap)}"


def _rule_order_notional(review: _Review) -> Iterator[Finding]:
    """quantity · |mark| · multiplier · rate ≤ max_order_notional (MAX_ORDER_NOTIONAL)."""
    cap = review.config.max_order_notional
    if cap is None:
        return
    price = _price(review.state, review.intent.instrument)
    rate = _rate(review.state, review.instrument.currency)
    notional = review.intent.quantity * abs(price) * review.instrument.multiplier * rate
    if notional > cap:
        yield "MAX_ORDER_NOTIONAL", f"notional {_fmt(notional)} {review.state.base_currency} > cap {_fmt(cap)}"


def _rule_price_band(review: _Review) -> Iterator[Finding]:
    """|limit − mark| ≤ price_band · |mark| for a limit order (PRICE_BAND)."""
    band, limit = review.config.price_band, review.intent.limit_price
    if band is None or limit is None:
        return
    mark = _price(review.state, review.intent.instrument)
    if abs(limit - mark) > band * abs(mark):
        yield "PRICE_BAND", f"limit {_fmt(limit)} is more than {_fmt(band)} away from the mark {_fmt(mark)}"


def _rule_order_rate(review: _Review) -> Iterator[Finding]:
    """Fewer than max_orders_per_window requests on the instrument in (now − window, now] (ORDER_RATE)."""
    limit = review.config.max_orders_per_window
    if limit is None:
        return
    start = review.now - timedelta(seconds=review.config.order_window_seconds)
    recent = sum(1 for at in review.state.recent_orders.get(review.intent.instrument, ()) if start < at <= review.now)
    if recent >= limit:
        yield "ORDER_RATE", (f"{recent} orders on {review.intent.instrument} in the last "
                             f"{review.config.order_window_seconds}s (limit {limit})")


def _rule_trading_state(review: _Review) -> Iterator[Finding]:
    """HALTED passes only reducing emergency exits; REDUCING passes only reducing orders."""
    state = review.state.trading_state
    if state is TradingState.HALTED and not (review.intent.emergency_exit and review.reduces):
        yield "HALTED", "trading is halted: only an emergency exit that reduces the position passes"
    if state is TradingState.REDUCING and not review.reduces:
        yield "DAILY_LOSS_CAP", "the trading state is REDUCING: only orders that reduce the position pass"


def _rule_daily_loss(review: _Review) -> Iterator[Finding]:
    """An increasing order needs a baseline (NO_BASELINE) and a loss below the cap (DAILY_LOSS_CAP)."""
    cap = review.config.daily_loss_cap
    if cap is None or review.reduces:
        return
    baseline = review.state.baseline_equity
    if baseline is None:
        yield "NO_BASELINE", "a daily loss cap is configured but no TradingDayStarted set a baseline"
        return
    loss = baseline - _equity(review.state)
    if _breached(loss, baseline, cap):
        yield "DAILY_LOSS_CAP", (f"daily loss {_fmt(loss)} ≥ {_fmt(cap)} of the baseline {_fmt(baseline)}: "
                                 f"only reducing orders pass")


def _breached(loss: Decimal, baseline: Decimal, cap: Decimal) -> bool:
    """loss ≥ cap · baseline; a baseline ≤ 0 counts as breached (there is nothing left to lose)."""
    return baseline <= 0 or loss >= cap * baseline


def _rule_exposure(review: _Review) -> Iterator[Finding]:
    """The projected portfolio stays within every configured exposure limit (increasing orders only)."""
    config = review.config
    if review.reduces or not config.exposure_limited():
        return
    state, intent = review.state, review.intent
    projected = dict(review.committed)
    projected[intent.instrument] = projected.get(intent.instrument, ZERO) + intent.side.sign * intent.quantity
    values: dict[str, Decimal] = {}  # market value in base currency, per instrument with a non-zero quantity
    for name, quantity in sorted(projected.items()):
        if quantity != 0:
            instrument = state.instruments[name]
            values[name] = quantity * _price(state, name) * instrument.multiplier * _rate(state, instrument.currency)
    equity = _equity(state)
    if equity <= 0:
        raise _Refused("NO_EQUITY", f"equity {_fmt(equity)} {state.base_currency}: exposure cannot be measured")

    def over(code: str, what: str, exposure: Decimal, limit: Decimal | None) -> Iterator[Finding]:
        if limit is not None and exposure > limit * equity:
            yield code, (f"projected {what} {_fmt(exposure)} {state.base_currency} = "
                         f"{_fmt(exposure / equity)} of equity {_fmt(equity)} > {_fmt(limit)}")

    target = intent.instrument
    yield from over("INSTRUMENT_EXPOSURE", f"exposure of {target}", abs(values.get(target, ZERO)),
                    config.max_instrument_exposure)
    asset_class = review.instrument.asset_class
    class_gross = sum((abs(v) for n, v in values.items() if state.instruments[n].asset_class == asset_class), ZERO)
    yield from over("ASSET_CLASS_EXPOSURE", f"gross exposure of asset class {asset_class}", class_gross,
                    config.max_asset_class_exposure.get(asset_class))
    yield from over("GROSS_EXPOSURE", "gross exposure", sum((abs(v) for v in values.values()), ZERO),
                    config.max_gross_exposure)
    yield from over("NET_EXPOSURE", "|net exposure|", abs(sum(values.values(), ZERO)), config.max_net_exposure)
    cluster = _cluster(state, target)
    cluster_gross = sum((abs(v) for n, v in values.items() if _cluster(state, n) == cluster), ZERO)
    yield from over("CLUSTER_EXPOSURE", f"gross exposure of cluster {cluster[1]}", cluster_gross,
                    config.max_cluster_exposure)


def _cluster(state: PortfolioState, instrument: str) -> tuple[str, str]:
    """The instrument's correlation cluster; an instrument absent from the map is its own singleton."""
    cluster = state.clusters.get(instrument)
    return ("cluster", cluster) if cluster is not None else ("singleton", instrument)


#: The rules of check(), each independent: a _Refused inside one becomes that rule's finding.
_RULES: tuple[Rule, ...] = (_rule_priced, _rule_lot_size, _rule_order_quantity, _rule_order_notional,
                            _rule_price_band, _rule_order_rate, _rule_trading_state, _rule_daily_loss,
                            _rule_exposure)


# -- the engine -----------------------------------------------------------------------------

class PreTradeRiskEngine:
    """Sizes signals and reviews orders under one ``RiskConfig`` (rules in the module docstring)."""

    def __init__(self, config: RiskConfig) -> None:
        if not isinstance(config, RiskConfig):
            raise InvalidArgument(f"invalid argument: expected a RiskConfig, got {type(config).__name__}")
        self.config = config
        self.config_hash = config.config_hash

    def size(self, state: PortfolioState, signal: StrategySignalEvent) -> Sizing:
        """The quantity to order for ``signal`` (fixed, or sized by its stop), or a refusal with its code."""
        with localcontext(FOLD_CONTEXT):
            try:
                instrument = _instrument(state, signal.instrument)
                if signal.quantity is not None:
                    return self._fixed_size(signal, instrument)
                return self._stop_size(state, signal, instrument)
            except _Refused as refusal:
                return Sizing(None, (refusal.code,), refusal.detail)

    @staticmethod
    def _fixed_size(signal: StrategySignalEvent, instrument: Instrument) -> Sizing:
        """The signal's own quantity, unchanged, when it is a whole number of lots (else LOT_SIZE)."""
        if not _is_lot_multiple(signal.quantity, instrument.lot_size):
            raise _Refused("LOT_SIZE", f"quantity {_fmt(signal.quantity)} is not a multiple of the lot size "
                                       f"{_fmt(instrument.lot_size)}")
        return Sizing(signal.quantity, (), f"fixed quantity {_fmt(signal.quantity)}")

    def _stop_size(self, state: PortfolioState, signal: StrategySignalEvent, instrument: Instrument) -> Sizing:
        """equity·risk_fraction / (|entry − stop|·multiplier·rate), capped, floored to whole lots."""
        entry = signal.limit_price if signal.limit_price is not None else signal.reference_price
        if entry is None:
            entry = _price(state, signal.instrument)
        stop = signal.stop_price
        if entry == stop or (stop > entry) != (signal.side is Side.SELL):
            raise _Refused("INVALID_STOP", f"a {signal.side.value} stop must be "
                                           f"{'below' if signal.side is Side.BUY else 'above'} the entry "
                                           f"{_fmt(entry)}, got {_fmt(stop)}")
        rate = _rate(state, instrument.currency)
        equity = _equity(state)
        if equity <= 0:
            raise _Refused("NO_EQUITY", f"equity {_fmt(equity)} {state.base_currency}: nothing to risk")
        budget = equity * self.config.risk_fraction
        quantity = _floor_div(budget, abs(entry - stop) * instrument.multiplier * rate)
        steps = [f"risk {_fmt(budget)} / (|{_fmt(entry)} − {_fmt(stop)}| · {_fmt(instrument.multiplier)} · "
                 f"{_fmt(rate)}) = {_fmt(quantity)}"]
        cap = self.config.max_order_quantity
        if cap is not None and quantity > cap:
            quantity = cap
            steps.append(f"capped at max_order_quantity {_fmt(cap)}")
        cap = self.config.max_order_notional
        if cap is not None and entry != 0:
            by_notional = _floor_div(cap, abs(entry) * instrument.multiplier * rate)
            if quantity > by_notional:
                quantity = by_notional
                steps.append(f"capped by max_order_notional {_fmt(cap)} at {_fmt(by_notional)}")
        lots = _floor_div(quantity, instrument.lot_size).to_integral_value(rounding=ROUND_FLOOR)
        quantity = lots * instrument.lot_size
        steps.append(f"rounded down to {_fmt(lots)} lot(s) of {_fmt(instrument.lot_size)} = {_fmt(quantity)}")
        if quantity <= 0:
            raise _Refused("ZERO_SIZE", "; ".join(steps))
        return Sizing(quantity, (), "; ".join(steps))

    def check(self, state: PortfolioState, intent: OrderIntent, now: datetime) -> RiskDecision:
        """The decision on ``intent`` (not yet folded into ``state``) at ``now``: every violated rule, listed."""
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise InvalidArgument(f"invalid argument: now must be a timezone-aware datetime, got {now!r}")
        with localcontext(FOLD_CONTEXT):
            try:
                instrument = _instrument(state, intent.instrument)
            except _Refused as refusal:
                return self._decision([(refusal.code, refusal.detail)])
            review = _Review(self.config, state, intent, instrument, now)
            findings: list[Finding] = []
            for rule in _RULES:
                try:
                    findings.extend(rule(review))
                except _Refused as refusal:
                    findings.append((refusal.code, refusal.detail))
            return self._decision(findings)

    def _decision(self, findings: list[Finding]) -> RiskDecision:
        """Approved iff nothing was found; codes sorted and unique, details in code order."""
        unique = sorted(set(findings))
        codes = tuple(sorted({_code(code) for code, _ in unique}))
        return RiskDecision(not codes, codes, self.config_hash, "; ".join(f"{code}: {text}" for code, text in unique))

    def daily_loss(self, state: PortfolioState) -> Decimal | None:
        """baseline_equity − current equity (base currency), None without a baseline; MissingFxRate if unvaluable."""
        if state.base_currency is None or state.baseline_equity is None:
            return None
        with localcontext(FOLD_CONTEXT):
            return state.baseline_equity - state.valuation().equity

    def loss_cap_breached(self, state: PortfolioState) -> bool:
        """Whether loss ≥ daily_loss_cap · baseline (False without a cap or a baseline; MissingFxRate if unvaluable)."""
        cap = self.config.daily_loss_cap
        loss = self.daily_loss(state)
        if cap is None or loss is None:
            return False
        with localcontext(FOLD_CONTEXT):
            return _breached(loss, state.baseline_equity, cap)
