"""``finam demo``: a seeded, deterministic multi-asset trading session through the real engine.

What it does, in order (every step through the production code paths):

1. A new portfolio stream ``portfolio-demo-<seed>-<n>`` (``n`` = how many demo portfolios
   already exist for that seed, so a re-run never collides with an earlier one).
2. Offline, before trading: correlation clusters from a warm-up price history
   (``finam_thin.clusters``: the only place floats are used, for statistics), published as
   ``ClusterMapPublished`` version 1 with the portfolio's set-up events.
3. The session: ``days`` trading days of ticks. Each tick publishes one batch through
   ``EventBus.publish``: an ``FxRateUpdated`` (EUR→USD), a ``MarkPriceUpdated`` per
   instrument and the tick's ``StrategySignalEvent``s. The ``TradingEngine`` (risk-checked
   by ``PreTradeRiskEngine`` under a ``RiskConfig``, executed by ``PaperExecution`` with
   slippage, fees and partial fills) and ``SnapshotEveryN`` run after each commit. The
   engine records ``TradingDayStarted`` by itself at each new UTC day. A stress episode (held
   instruments gap against their positions) makes the daily loss cap latch REDUCING; an
   operator halts trading for a short while (``TradingStateChanged`` HALTED, then ACTIVE),
   during which only emergency exits pass.
4. Output (Rich): positions, cash, equity and fees; a risk summary (approved, denied by
   reason code, signals denied by reason, trading-state changes); an HTML report with an
   equity curve and gross exposure by asset class (inline SVG, no network needed).
5. A restart: new pool, store, repository and engine objects rebuild the portfolio from the
   store (snapshot + tail) and from a full replay; all hashes must equal the live state's.

Determinism: one ``random.Random(seed)`` drives prices and signals; event times start at a
fixed date and advance per tick; prices are Decimal random walks (integer shocks, no
floats); event ids are ``uuid5`` of the stream name and a label, so every id is unique and
the same seed gives the same state hash on every run (the hash does not depend on ids or
stream names: every order is filled by the paper venue, so none is left open).
"""

from __future__ import annotations

import html
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, localcontext
from pathlib import Path
from uuid import NAMESPACE_URL, UUID, uuid5

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .bus import EventBus
from .clusters import cluster_map_event, correlation_clusters
from .contract import DomainEvent
from .database import create_pool
from .errors import WrongExpectedVersion
from .events import (
    TRADING_EVENTS,
    CashDeposited,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderDenied,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    SignalDenied,
    StrategySignalEvent,
    TradingDayStarted,
    TradingState,
    TradingStateChanged,
)
from .portfolio import STATE_SCHEMA_VERSION, PortfolioState
from .postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from .repository import PortfolioRepository, SnapshotEveryN
from .risk import PreTradeRiskEngine, RiskConfig
from .trading import PaperExecution, TradingEngine

#: The first tick of the session (a Tuesday, US cash open); each day trades SESSION_MINUTES from here.
SESSION_START = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
SESSION_MINUTES = 390
WARM_UP_TICKS = 240
BASE_CURRENCY = "USD"
SNAPSHOT_EVERY = 1000
CLUSTER_THRESHOLD = 0.5
DEFAULT_REPORT = Path("finam-demo-report.html")

#: The price walks' own Decimal context (independent of the caller's).
WALK_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
#: Shocks are integers in units of 0.1 basis point.
SHOCK_UNIT = Decimal("0.00001")
LEVEL_QUANTUM = Decimal("1E-12")


@dataclass(frozen=True)
class DemoInstrument:
    """A tradable instrument of the demo and how its price walks (factor loadings in tenths)."""

    symbol: str
    asset_class: str
    currency: str
    start: Decimal
    tick: Decimal = Decimal("0.01")
    multiplier: Decimal = Decimal(1)
    lot_size: Decimal = Decimal(1)
    loadings: tuple[tuple[str, int], ...] = ()
    idiosyncratic: int = 40  # uniform shock range, ± units of 0.1 bp


D = Decimal
INSTRUMENTS: tuple[DemoInstrument, ...] = (
    DemoInstrument("AAPL", "equity", "USD", D("230.00"), loadings=(("market", 10), ("tech", 8))),
    DemoInstrument("MSFT", "equity", "USD", D("420.00"), loadings=(("market", 10), ("tech", 8))),
    DemoInstrument("NVDA", "equity", "USD", D("140.00"), loadings=(("market", 12), ("tech", 12)), idiosyncratic=60),
    DemoInstrument("JPM", "equity", "USD", D("240.00"), loadings=(("market", 10), ("banks", 10))),
    DemoInstrument("XOM", "equity", "USD", D("118.00"), loadings=(("market", 6), ("energy", 12))),
    DemoInstrument("SAP", "equity", "EUR", D("235.00"), loadings=(("market", 6), ("europe", 8), ("tech", 6))),
    DemoInstrument("ASML", "equity", "EUR", D("680.00"), loadings=(("market", 6), ("europe", 6), ("tech", 10))),
    DemoInstrument("SIE", "equity", "EUR", D("185.00"), loadings=(("market", 5), ("europe", 10))),
    DemoInstrument("ISP", "equity", "EUR", D("3.900"), tick=D("0.001"), loadings=(("europe", 9), ("banks", 8))),
    DemoInstrument("MES", "future", "USD", D("6000.00"), multiplier=D(5), loadings=(("market", 10), ("tech", 3)),
                   idiosyncratic=10),
    DemoInstrument("MNQ", "future", "USD", D("21000.00"), multiplier=D(2), loadings=(("market", 10), ("tech", 9)),
                   idiosyncratic=10),
    DemoInstrument("FESX", "future", "EUR", D("4900.00"), multiplier=D(10), loadings=(("market", 5), ("europe", 10)),
                   idiosyncratic=10),
    DemoInstrument("MCL", "future", "USD", D("70.00"), multiplier=D(100), loadings=(("energy", 15),),
                   idiosyncratic=50),
    DemoInstrument("BTC", "crypto", "USD", D("95000.00"), lot_size=D("0.001"), loadings=(("market", 3), ("crypto", 15)),
                   idiosyncratic=80),
    DemoInstrument("ETH", "crypto", "USD", D("3400.00"), lot_size=D("0.01"), loadings=(("market", 3), ("crypto", 18)),
                   idiosyncratic=100),
)
FACTORS = ("banks", "crypto", "energy", "europe", "market", "tech")
FACTOR_RANGE = 60  # factor shocks: uniform ± 6 bp per tick

DEPOSITS = (("USD", D("800000")), ("EUR", D("185000")))
EURUSD_START = D("1.08500")

#: The demo's risk limits: tight enough that a realistic share of orders is denied, for many reasons.
DEMO_RISK = {
    "version": "demo-1",
    "risk_fraction": "0.0008",
    "max_order_quantity": "5000",
    "max_order_notional": "60000",
    "max_instrument_exposure": "0.08",
    "max_asset_class_exposure": {"crypto": "0.10", "equity": "0.90", "future": "0.35"},
    "max_gross_exposure": "1.20",
    "max_net_exposure": "0.60",
    "max_cluster_exposure": "0.22",
    "daily_loss_cap": "0.015",
    "price_band": "0.02",
    "max_orders_per_window": 5,
    "order_window_seconds": 600,
}
PAPER = PaperExecution(slippage_bps=D(2), fee_bps=D(1), fee_per_order=D("1.00"), partial_fill_ratio=D("0.6"))


# -- the market: seeded Decimal random walks ------------------------------------------------

class Market:
    """Prices of every instrument and the EUR→USD rate, moved one tick at a time by ``rng``.

    A move is a sum of integer shocks (factor shocks × loadings, plus an idiosyncratic shock)
    in units of 0.1 bp, applied to an exact Decimal level; the published price is the level
    quantized to the instrument's tick. No floats, no clock.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.levels = {i.symbol: i.start for i in INSTRUMENTS}
        self.eurusd = EURUSD_START

    def step(self, stress: dict[str, int] | None = None) -> None:
        """Advance one tick; ``stress`` adds extra shocks (0.1 bp units) per instrument."""
        rng = self.rng
        factors = {name: rng.randint(-FACTOR_RANGE, FACTOR_RANGE) for name in FACTORS}
        with localcontext(WALK_CONTEXT):
            for instrument in INSTRUMENTS:
                shock = D(sum(weight * factors[name] for name, weight in instrument.loadings)) / 10
                shock += rng.randint(-instrument.idiosyncratic, instrument.idiosyncratic)
                if stress:
                    shock += stress.get(instrument.symbol, 0)
                level = self.levels[instrument.symbol] * (1 + shock * SHOCK_UNIT)
                self.levels[instrument.symbol] = level.quantize(LEVEL_QUANTUM)
            self.eurusd = (self.eurusd * (1 + rng.randint(-15, 15) * SHOCK_UNIT)).quantize(LEVEL_QUANTUM)

    def price(self, symbol: str) -> Decimal:
        return self.levels[symbol].quantize(_BY_SYMBOL[symbol].tick, rounding=ROUND_HALF_EVEN)

    def rate(self) -> Decimal:
        return self.eurusd.quantize(D("0.00001"), rounding=ROUND_HALF_EVEN)


_BY_SYMBOL = {i.symbol: i for i in INSTRUMENTS}


def warm_up_history(rng: random.Random, ticks: int = WARM_UP_TICKS) -> tuple[Market, dict[str, list[Decimal]]]:
    """Walk the market ``ticks`` times before the session; the quantized prices are the clustering input."""
    market = Market(rng)
    history: dict[str, list[Decimal]] = {i.symbol: [market.price(i.symbol)] for i in INSTRUMENTS}
    for _ in range(ticks):
        market.step()
        for instrument in INSTRUMENTS:
            history[instrument.symbol].append(market.price(instrument.symbol))
    return market, history


# -- results ------------------------------------------------------------------------------

@dataclass
class CurvePoint:
    """The portfolio after one tick: equity and gross exposure per asset class (base currency)."""

    at: datetime
    equity: Decimal
    gross_by_asset_class: dict[str, Decimal]
    trading_state: str


@dataclass
class DemoResult:
    """What ``run_demo`` did and found."""

    stream: str
    seed: int
    signals: int
    ticks: int
    days: int
    events: int
    state_hash: str
    restart_hash: str
    replay_hash: str
    snapshot_version: int | None
    tail_length: int
    approved: int
    denied: int
    denied_by_reason: dict[str, int]
    signals_denied_by_reason: dict[str, int]
    state_changes: list[tuple[datetime, str, str]]
    trading_days: list[date]
    clusters: dict[str, str]
    equity: Decimal
    report_path: Path | None
    elapsed_seconds: float
    session_seconds: float
    curve: list[CurvePoint] = field(default_factory=list, repr=False)

    @property
    def identical(self) -> bool:
        return self.state_hash == self.restart_hash == self.replay_hash


# -- the session ----------------------------------------------------------------------------

class _Ids:
    """Deterministic, unique event ids: uuid5 of the stream name and a label."""

    def __init__(self, stream: str) -> None:
        self.stream = stream

    def __call__(self, label: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"finam:{self.stream}/{label}")


def _demo_streams(pool, seed: int) -> int:
    with pool.connection() as connection:
        return connection.execute("SELECT count(*) FROM finam.streams WHERE stream LIKE %s",
                                  (f"portfolio-demo-{seed}-%",)).fetchone()[0]


def _lots(quantity: Decimal, lot: Decimal) -> Decimal:
    """``quantity`` rounded down to whole lots."""
    return (quantity / lot).to_integral_value(rounding=ROUND_DOWN) * lot


class _Strategy:
    """The seeded signal generator: fixed-size and stop-sized orders, buys and sells, some limits,
    position reductions and occasional emergency exits, with momentum bursts on one instrument."""

    def __init__(self, rng: random.Random, ids: _Ids) -> None:
        self.rng = rng
        self.ids = ids
        self.count = 0

    def _rate(self, instrument: DemoInstrument, market: Market) -> Decimal:
        return D(1) if instrument.currency == BASE_CURRENCY else market.rate()

    def _unit_value(self, instrument: DemoInstrument, market: Market) -> Decimal:
        return market.price(instrument.symbol) * instrument.multiplier * self._rate(instrument, market)

    def signal(self, at: datetime, market: Market, state: PortfolioState, previous: str | None,
               emergency: bool = False) -> StrategySignalEvent:
        rng = self.rng
        self.count += 1
        event_id = self.ids(f"signal-{self.count}")
        held = sorted(name for name, p in state.positions.items() if p.quantity != 0)
        roll = rng.random()
        with localcontext(WALK_CONTEXT):
            if emergency or (held and roll < 0.008):
                return self._exit(at, market, state, held, event_id)
            if held and roll < 0.20:
                return self._reduce(at, market, state, held, event_id)
            if previous is not None and rng.random() < 0.12:
                instrument = _BY_SYMBOL[previous]  # a momentum burst on the same instrument
            else:
                instrument = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
            return self._open(at, market, instrument, event_id)

    def _open(self, at: datetime, market: Market, instrument: DemoInstrument, event_id: UUID) -> StrategySignalEvent:
        rng = self.rng
        side = Side.BUY if rng.random() < 0.55 else Side.SELL
        price = market.price(instrument.symbol)
        limit = None
        if rng.random() < 0.30:  # a marketable limit, sometimes far outside the price band
            offset = D(rng.randint(2, 12)) / 10000 if rng.random() < 0.88 else D(rng.randint(250, 500)) / 10000
            limit = (price * (1 + side.sign * offset)).quantize(instrument.tick, rounding=ROUND_HALF_EVEN)
        fields: dict = {}
        if rng.random() < 0.55:  # fixed size: a target notional in USD, sometimes oversized or an odd lot
            target = D(rng.choice((8000, 15000, 25000, 40000)))
            if rng.random() < 0.05:
                target *= 4
            quantity = max(_lots(target / self._unit_value(instrument, market), instrument.lot_size),
                           instrument.lot_size)
            if rng.random() < 0.015:
                quantity += instrument.lot_size / 2
            fields["quantity"] = quantity
        else:  # sized by the stop: the risk engine risks a fixed fraction of equity
            distance = D(rng.randint(40, 250)) / 10000
            entry = limit if limit is not None else price
            direction = -side.sign if rng.random() >= 0.015 else side.sign  # rarely on the wrong side
            fields["stop_price"] = (entry * (1 + direction * distance)).quantize(instrument.tick,
                                                                                 rounding=ROUND_HALF_EVEN)
        return StrategySignalEvent(occurred_at=at, event_id=event_id, strategy="demo-momentum",
                                   instrument=instrument.symbol, side=side, limit_price=limit,
                                   reference_price=price, **fields)

    def _reduce(self, at: datetime, market: Market, state: PortfolioState, held: list[str],
                event_id: UUID) -> StrategySignalEvent:
        symbol = held[self.rng.randrange(len(held))]
        instrument, position = _BY_SYMBOL[symbol], state.positions[symbol]
        quantity = max(_lots(abs(position.quantity) / 2, instrument.lot_size), instrument.lot_size)
        side = Side.SELL if position.quantity > 0 else Side.BUY
        return StrategySignalEvent(occurred_at=at, event_id=event_id, strategy="demo-rebalance", instrument=symbol,
                                   side=side, quantity=quantity, reference_price=market.price(symbol))

    def _exit(self, at: datetime, market: Market, state: PortfolioState, held: list[str],
              event_id: UUID) -> StrategySignalEvent:
        if not held:  # nothing to exit
            return self._open(at, market, INSTRUMENTS[self.rng.randrange(len(INSTRUMENTS))], event_id)
        symbol = max(held, key=lambda s: (abs(state.positions[s].quantity) * self._unit_value(_BY_SYMBOL[s], market), s))
        instrument, position = _BY_SYMBOL[symbol], state.positions[symbol]
        fits = _lots(D(55000) / self._unit_value(instrument, market), instrument.lot_size)
        quantity = max(min(abs(position.quantity), fits), instrument.lot_size)
        side = Side.SELL if position.quantity > 0 else Side.BUY
        return StrategySignalEvent(occurred_at=at, event_id=event_id, strategy="demo-exit", instrument=symbol,
                                   side=side, quantity=quantity, reference_price=market.price(symbol),
                                   emergency_exit=True)


def _stress(state: PortfolioState, per_tick: int) -> dict[str, int]:
    """Shocks moving every held instrument against its position."""
    return {name: (-per_tick if p.quantity > 0 else per_tick)
            for name, p in sorted(state.positions.items()) if p.quantity != 0}


def run_demo(dsn: str, *, seed: int = 42, signals: int = 3000, days: int = 3,
             report_path: Path | str | None = DEFAULT_REPORT, console: Console | None = None) -> DemoResult:
    """Run the demo session on the migrated database ``dsn``; print with Rich; return what happened."""
    if signals < 1 or days < 1:
        raise ValueError("signals and days must be at least 1")
    console = console or Console()
    started = time.perf_counter()
    rng = random.Random(seed)
    market, history = warm_up_history(rng)
    clusters = correlation_clusters(history, CLUSTER_THRESHOLD)
    config = RiskConfig.from_mapping(DEMO_RISK)
    ticks_per_day = max(10, -(-signals // (3 * days)))
    ticks = ticks_per_day * days
    step = timedelta(seconds=SESSION_MINUTES * 60 // ticks_per_day)
    stress_day = max(0, days - 2)
    stress_start = stress_day * ticks_per_day + ticks_per_day * 55 // 100
    stress_ticks = max(3, ticks_per_day // 12)
    stress_per_tick = 6000 // stress_ticks  # 6 % against every position over the episode
    halt_start = (days - 1) * ticks_per_day + ticks_per_day * 30 // 100
    halt_end = halt_start + max(3, ticks_per_day // 20)

    with create_pool(dsn, max_size=4) as pool:
        store = PostgresEventStore(pool)
        checkpoints = PostgresCheckpointStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        n = _demo_streams(pool, seed)
        while True:  # a concurrent run may take the same name: move on to the next
            stream = f"portfolio-demo-{seed}-{n}"
            ids = _Ids(stream)
            setup = _setup_events(ids, clusters, market)
            bus = EventBus(store, checkpoints)
            engine = TradingEngine(repository, PreTradeRiskEngine(config), PAPER)
            names = [f"demo:{stream}:trading-engine", f"demo:{stream}:execution", f"demo:{stream}:snapshots"]
            # the demo's handlers follow its own stream only, from now on: other portfolios are not theirs
            bus.subscribe(names[0], engine.on_event, stream=stream, from_end=True)
            bus.subscribe(names[1], engine.on_submitted, stream=stream, from_end=True)
            bus.subscribe(names[2], SnapshotEveryN(repository, every=SNAPSHOT_EVERY), stream=stream, from_end=True)
            bus.catch_up()  # places the new checkpoints at the current end
            try:
                _check(bus.publish(stream, setup, expected_version=0))
                break
            except WrongExpectedVersion:
                for name in names:
                    checkpoints.delete(name)
                n += 1

        console.print(f"[bold]Finam demo[/bold] seed {seed}: stream [cyan]{stream}[/cyan], {len(INSTRUMENTS)} "
                      f"instruments, {signals} signals over {days} day(s) in {ticks} ticks")
        _print_clusters(console, clusters)
        strategy = _Strategy(rng, ids)
        curve: list[CurvePoint] = []
        state = engine.state(stream)
        session_started = time.perf_counter()
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console,
                      transient=False) as progress:
            task = progress.add_task("trading", total=ticks, status="")
            for tick in range(ticks):
                day, index = divmod(tick, ticks_per_day)
                at = SESSION_START + timedelta(days=day) + step * index
                stress = (_stress(state, stress_per_tick)
                          if stress_start <= tick < stress_start + stress_ticks else None)
                market.step(stress)
                batch: list[DomainEvent] = []
                if tick == halt_start:
                    batch.append(TradingStateChanged(occurred_at=at, event_id=ids(f"halt-{tick}"),
                                                     state=TradingState.HALTED, reason="MANUAL_HALT"))
                if tick == halt_end:
                    batch.append(TradingStateChanged(occurred_at=at, event_id=ids(f"resume-{tick}"),
                                                     state=TradingState.ACTIVE, reason="MANUAL_RESUME"))
                batch.append(FxRateUpdated(occurred_at=at, event_id=ids(f"fx-{tick}"), currency="EUR",
                                           rate=market.rate()))
                batch += [MarkPriceUpdated(occurred_at=at, event_id=ids(f"mark-{tick}-{i.symbol}"),
                                           instrument=i.symbol, price=market.price(i.symbol)) for i in INSTRUMENTS]
                previous = None
                for k in range((tick + 1) * signals // ticks - tick * signals // ticks):
                    signal = strategy.signal(at + timedelta(seconds=2 * (k + 1)), market, state, previous,
                                             emergency=(tick == halt_start and k == 0))
                    previous = signal.instrument
                    batch.append(signal)
                _check(bus.publish(stream, batch))
                state = engine.state(stream)
                valuation = state.valuation()
                curve.append(CurvePoint(at, valuation.equity, dict(valuation.gross_by_asset_class),
                                        state.trading_state.value))
                progress.update(task, advance=1, status=f"day {day + 1}/{days}  equity "
                                f"{valuation.equity.quantize(D('0.01')):,} {BASE_CURRENCY}  "
                                f"{state.trading_state.value}")
        session_seconds = time.perf_counter() - session_started
        live_hash = state.state_hash()
        final = state
        for name in names:  # the run is over: its handlers' checkpoints are not needed any more
            checkpoints.delete(name)

    # -- restart: nothing kept in memory ------------------------------------------------------
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        snapshots = PostgresSnapshotStore(pool)
        repository = PortfolioRepository(store, snapshots)
        snapshot = snapshots.load(stream, STATE_SCHEMA_VERSION)
        restart_started = time.perf_counter()
        restarted = TradingEngine(repository, PreTradeRiskEngine(config), PAPER).state(stream)
        restart_ms = (time.perf_counter() - restart_started) * 1000
        stats = _replay_with_stats(store, stream)
    snapshot_version = snapshot.version if snapshot else None
    result = DemoResult(
        stream=stream, seed=seed, signals=signals, ticks=ticks, days=days, events=final.version,
        state_hash=live_hash, restart_hash=restarted.state_hash(), replay_hash=stats.state.state_hash(),
        snapshot_version=snapshot_version, tail_length=restarted.version - (snapshot_version or 0),
        approved=stats.approved, denied=stats.denied,
        denied_by_reason=dict(sorted(stats.denied_by_reason.items())),
        signals_denied_by_reason=dict(sorted(stats.signal_denied_by_reason.items())),
        state_changes=stats.state_changes, trading_days=stats.trading_days, clusters=clusters,
        equity=final.valuation().equity, report_path=None, elapsed_seconds=0.0, session_seconds=session_seconds,
        curve=curve)
    _print_portfolio(console, final)
    _print_risk(console, result)
    if report_path is not None:
        result.report_path = write_report(Path(report_path), result, final,
                                          (halt_start, halt_end), (stress_start, stress_start + stress_ticks))
        console.print(f"Report: [cyan]{result.report_path}[/cyan] (equity curve, exposure by asset class)")
    result.elapsed_seconds = time.perf_counter() - started
    _print_restart(console, result, restart_ms)
    return result


def _check(published) -> None:
    """A demo must not go on past a failed handler: raise its error."""
    if published.dispatch.failures:
        raise published.dispatch.failures[0].error


def _setup_events(ids: _Ids, clusters: dict[str, str], market: Market) -> list[DomainEvent]:
    at = SESSION_START - timedelta(hours=1)
    events: list[DomainEvent] = [PortfolioOpened(occurred_at=at, event_id=ids("opened"), base_currency=BASE_CURRENCY)]
    events += [CashDeposited(occurred_at=at, event_id=ids(f"deposit-{currency}"), currency=currency, amount=amount)
               for currency, amount in DEPOSITS]
    events += [InstrumentRegistered(occurred_at=at, event_id=ids(f"instrument-{i.symbol}"), instrument=i.symbol,
                                    asset_class=i.asset_class, currency=i.currency, multiplier=i.multiplier,
                                    lot_size=i.lot_size) for i in INSTRUMENTS]
    events.append(FxRateUpdated(occurred_at=at, event_id=ids("fx-open"), currency="EUR", rate=market.rate()))
    events.append(cluster_map_event(clusters, map_version=1, occurred_at=at, event_id=ids("clusters-1")))
    return events


@dataclass
class _Stats:
    state: PortfolioState
    approved: int = 0
    denied: int = 0
    denied_by_reason: Counter = field(default_factory=Counter)
    signal_denied_by_reason: Counter = field(default_factory=Counter)
    state_changes: list[tuple[datetime, str, str]] = field(default_factory=list)
    trading_days: list[date] = field(default_factory=list)


def _replay_with_stats(store: PostgresEventStore, stream: str) -> _Stats:
    """A full replay without snapshot, counting risk decisions and trading-state changes on the way."""
    stats = _Stats(PortfolioState())
    for stored in store.iter_stream(stream, page_size=2000):
        recorded = TRADING_EVENTS.decode(stored)
        event = recorded.event
        before = stats.state.trading_state
        stats.state.apply(recorded)
        if isinstance(event, OrderSubmitted):
            stats.approved += 1
        elif isinstance(event, OrderDenied):
            stats.denied += 1
            stats.denied_by_reason.update(event.reason_codes)
        elif isinstance(event, SignalDenied):
            stats.signal_denied_by_reason.update(event.reason_codes)
        elif isinstance(event, TradingStateChanged):
            stats.state_changes.append((event.occurred_at, event.state.value, event.reason))
        elif isinstance(event, TradingDayStarted):
            stats.trading_days.append(event.trading_day)
            if before is not stats.state.trading_state:
                stats.state_changes.append((event.occurred_at, stats.state.trading_state.value, "NEW_TRADING_DAY"))
    return stats


# -- printing -----------------------------------------------------------------------------------

def _money(value: Decimal) -> str:
    return f"{value.quantize(D('0.01'), rounding=ROUND_HALF_EVEN):,}"


def _print_clusters(console: Console, clusters: dict[str, str]) -> None:
    groups: dict[str, list[str]] = {}
    for name, cluster in clusters.items():
        groups.setdefault(cluster, []).append(name)
    console.print("Correlation clusters (offline, from a warm-up history; published as ClusterMapPublished v1): "
                  + "; ".join(f"{c}: {', '.join(m)}" for c, m in sorted(groups.items(), key=lambda g: int(g[0][8:]))))


def _print_portfolio(console: Console, state: PortfolioState) -> None:
    valuation = state.valuation()
    table = Table(title=f"Portfolio {state.base_currency} at version {state.version}", show_lines=False)
    for column in ("instrument", "class", "ccy", "quantity", "avg price", "mark", "market value",
                   "unrealized", "realized"):
        table.add_column(column, justify="left" if column in ("instrument", "class", "ccy") else "right")
    for name, row in valuation.instruments.items():
        position = state.positions[name]
        table.add_row(name, row.asset_class, row.currency, f"{row.quantity:,}",
                      _money(position.average_price), f"{row.mark:,}", _money(row.market_value),
                      _money(row.unrealized_pnl), _money(row.realized_pnl))
    console.print(table)
    cash = ", ".join(f"{currency} {_money(amount)}" for currency, amount in sorted(state.cash.items()))
    fees = ", ".join(f"{currency} {_money(amount)}" for currency, amount in sorted(state.fees.items()))
    console.print(f"Cash: {cash}   (in {state.base_currency}: {_money(valuation.cash)})")
    console.print(f"Equity: [bold]{_money(valuation.equity)} {state.base_currency}[/bold]   gross exposure "
                  f"{_money(valuation.gross_exposure)}   net {_money(valuation.net_exposure)}   "
                  f"realized {_money(valuation.realized_pnl)}   unrealized {_money(valuation.unrealized_pnl)}   "
                  f"fees {fees} ({_money(valuation.fees)} {state.base_currency})")


def _print_risk(console: Console, result: DemoResult) -> None:
    total = result.approved + result.denied
    share = f"{100 * result.denied / total:.1f} %" if total else "-"  # display only
    console.print(f"Risk: [green]{result.approved} approved[/green], [red]{result.denied} denied[/red] ({share}) "
                  f"of {total} orders; {sum(result.signals_denied_by_reason.values())} signals could not be sized")
    table = Table(title="Denials by reason code (an order may have several)")
    table.add_column("reason")
    table.add_column("orders", justify="right")
    table.add_column("signals", justify="right")
    for code in sorted(set(result.denied_by_reason) | set(result.signals_denied_by_reason)):
        table.add_row(code, str(result.denied_by_reason.get(code, "")), str(result.signals_denied_by_reason.get(code, "")))
    console.print(table)
    changes = Table(title="Trading state changes")
    for column in ("time (UTC)", "state", "reason"):
        changes.add_column(column)
    for at, state, reason in result.state_changes:
        changes.add_row(at.strftime("%Y-%m-%d %H:%M:%S"), state, reason)
    console.print(changes)
    console.print("Trading days: " + ", ".join(day.isoformat() for day in result.trading_days))


def _print_restart(console: Console, result: DemoResult, restart_ms: float) -> None:
    console.print(f"Restart: new pool, store and engine; snapshot at version {result.snapshot_version} + "
                  f"{result.tail_length} events in {restart_ms:.1f} ms")
    console.print(f"  live     {result.state_hash}")
    console.print(f"  restart  {result.restart_hash}  (snapshot + tail)")
    console.print(f"  replay   {result.replay_hash}  (every event, no snapshot)")
    verdict = "[bold green]identical[/bold green]" if result.identical else "[bold red]DIFFERENT[/bold red]"
    console.print(f"State hash after restart: {verdict} ({result.events} events, {result.session_seconds:.1f} s "
                  f"session, {result.elapsed_seconds:.1f} s in all)")


# -- the HTML report ------------------------------------------------------------------------------

CLASS_COLOURS = {"crypto": "#d97706", "equity": "#2563eb", "future": "#059669"}
WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 900, 260, 90, 20, 20, 40


def _coordinate(value: Decimal) -> str:
    return str(value.quantize(D("0.1"), rounding=ROUND_HALF_EVEN))


def _chart(series: dict[str, list[Decimal]], colours: dict[str, str], points: list[CurvePoint],
           shaded: list[tuple[int, int, str, str]], title: str, zero_based: bool) -> str:
    """An SVG line chart of ``series`` over the ticks (coordinates computed in Decimal)."""
    with localcontext(WALK_CONTEXT):
        values = [v for line in series.values() for v in line]
        low, high = (min(values), max(values)) if values else (D(0), D(1))
        if zero_based:
            low = min(low, D(0))
        if high == low:
            high = low + 1
        margin = (high - low) / 20
        low, high = (low if zero_based and low == 0 else low - margin), high + margin
        count = max(len(points) - 1, 1)
        plot_w, plot_h = D(WIDTH - PAD_LEFT - PAD_RIGHT), D(HEIGHT - PAD_TOP - PAD_BOTTOM)

        def x(index: int) -> Decimal:
            return PAD_LEFT + plot_w * index / count

        def y(value: Decimal) -> Decimal:
            return PAD_TOP + plot_h * (high - value) / (high - low)

        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
                 f'height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">',
                 f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
                 f'stroke="#ccc"/>']
        for start, end, colour, label in shaded:
            parts.append(f'<rect x="{_coordinate(x(start))}" y="{PAD_TOP}" width="{_coordinate(x(end) - x(start))}" '
                         f'height="{plot_h}" fill="{colour}" opacity="0.25"><title>{html.escape(label)}</title></rect>')
        for index in range(1, len(points)):  # day boundaries
            if points[index].at.date() != points[index - 1].at.date():
                px = _coordinate(x(index))
                parts.append(f'<line x1="{px}" y1="{PAD_TOP}" x2="{px}" y2="{PAD_TOP + plot_h}" stroke="#888" '
                             f'stroke-dasharray="4 3"/>')
                parts.append(f'<text x="{px}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
                             f'{points[index].at.date().isoformat()}</text>')
        if points:
            parts.append(f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}" font-size="11">{points[0].at.date().isoformat()}</text>')
        for fraction in (0, 1, 2, 3, 4):
            value = low + (high - low) * fraction / 4
            py = _coordinate(y(value))
            parts.append(f'<line x1="{PAD_LEFT - 4}" y1="{py}" x2="{PAD_LEFT}" y2="{py}" stroke="#888"/>')
            parts.append(f'<text x="{PAD_LEFT - 6}" y="{py}" font-size="11" text-anchor="end" '
                         f'dominant-baseline="middle">{_money(value)}</text>')
        for name, line in series.items():
            path = " ".join(f"{_coordinate(x(i))},{_coordinate(y(v))}" for i, v in enumerate(line))
            parts.append(f'<polyline class="series" data-series="{html.escape(name)}" fill="none" '
                         f'stroke="{colours[name]}" stroke-width="1.6" points="{path}"/>')
        parts.append("</svg>")
    return "\n".join(parts)


def write_report(path: Path, result: DemoResult, state: PortfolioState, halt: tuple[int, int],
                 stress: tuple[int, int]) -> Path:
    """Write the HTML report (inline SVG charts and tables); return its absolute path."""
    points = result.curve
    shaded = [(stress[0], min(stress[1], len(points) - 1), "#f59e0b", "stress episode"),
              (halt[0], min(halt[1], len(points) - 1), "#ef4444", "manual HALT")]
    shaded = [s for s in shaded if s[0] < len(points)]
    equity_svg = _chart({"portfolio-equity": [p.equity for p in points]}, {"portfolio-equity": "#111827"}, points, shaded,
                        f"Equity ({BASE_CURRENCY})", zero_based=False)
    classes = sorted({c for p in points for c in p.gross_by_asset_class} | set(CLASS_COLOURS))
    exposure = {c: [p.gross_by_asset_class.get(c, D(0)) for p in points] for c in classes}
    exposure_svg = _chart(exposure, {c: CLASS_COLOURS.get(c, "#6b7280") for c in classes}, points, shaded,
                          f"Gross exposure by asset class ({BASE_CURRENCY})", zero_based=True)
    legend = " ".join(f'<span style="color:{CLASS_COLOURS.get(c, "#6b7280")}">&#9632; {html.escape(c)}</span>'
                      for c in classes)
    valuation = state.valuation()
    rows = "\n".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(r.asset_class)}</td><td>{r.currency}</td>"
        f"<td>{r.quantity}</td><td>{_money(state.positions[n].average_price)}</td><td>{r.mark}</td>"
        f"<td>{_money(r.market_value)}</td><td>{_money(r.unrealized_pnl)}</td><td>{_money(r.realized_pnl)}</td></tr>"
        for n, r in valuation.instruments.items())
    reasons = "\n".join(f"<tr><td>{c}</td><td>{result.denied_by_reason.get(c, '')}</td>"
                        f"<td>{result.signals_denied_by_reason.get(c, '')}</td></tr>"
                        for c in sorted(set(result.denied_by_reason) | set(result.signals_denied_by_reason)))
    changes = "\n".join(f"<tr><td>{at.strftime('%Y-%m-%d %H:%M:%S')}</td><td>{s}</td><td>{html.escape(r)}</td></tr>"
                        for at, s, r in result.state_changes)
    cluster_rows = "\n".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(c)}</td></tr>"
                             for n, c in result.clusters.items())
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Finam demo report — {html.escape(result.stream)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#111}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}} td:first-child,th:first-child{{text-align:left}}
code{{background:#f3f4f6;padding:1px 4px}}</style></head><body>
<h1>Finam demo report</h1>
<p>Stream <code>{html.escape(result.stream)}</code>, seed {result.seed}: {result.signals} signals over {result.days}
day(s) in {result.ticks} ticks, {result.events} events. State hash <code>{result.state_hash}</code>
(restart from snapshot + tail: {'identical' if result.identical else 'DIFFERENT'}).</p>
<h2 id="equity-curve">Equity curve</h2>
<p>Equity in {BASE_CURRENCY} after each tick (marks and FX rates of that tick). Dashed lines: day boundaries;
amber: stress episode; red: manual HALT.</p>
{equity_svg}
<h2 id="exposure">Gross exposure by asset class</h2>
<p>{legend}</p>
{exposure_svg}
<h2>Positions</h2>
<table><tr><th>instrument</th><th>class</th><th>ccy</th><th>quantity</th><th>avg price</th><th>mark</th>
<th>market value</th><th>unrealized</th><th>realized</th></tr>
{rows}</table>
<p>Equity {_money(valuation.equity)} {BASE_CURRENCY}; cash {_money(valuation.cash)}; fees {_money(valuation.fees)};
gross exposure {_money(valuation.gross_exposure)}; net {_money(valuation.net_exposure)}.</p>
<h2>Risk</h2>
<p>{result.approved} orders approved, {result.denied} denied.</p>
<table><tr><th>reason code</th><th>orders</th><th>signals</th></tr>
{reasons}</table>
<h3>Trading state changes</h3>
<table><tr><th>time (UTC)</th><th>state</th><th>reason</th></tr>
{changes}</table>
<h3>Correlation clusters (ClusterMapPublished v1)</h3>
<table><tr><th>instrument</th><th>cluster</th></tr>
{cluster_rows}</table>
</body></html>
"""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
