"""What the ``finam run``, ``streams``, ``show`` and ``replay`` commands do (the CLI only parses arguments).

Application code over the store: ``run_file`` publishes a user's events through the
EventBus with the TradingEngine subscribed, after ``inputs`` has checked the whole
file; the inspection functions only read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .bus import EventBus
from .database import create_pool
from .errors import InvalidArgument
from .events import TRADING_EVENTS
from .inputs import check_against, read_events
from .postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from .repository import PortfolioRepository, SnapshotEveryN, portfolio_stream
from .risk import PreTradeRiskEngine, RiskConfig
from .trading import PaperExecution, TradingEngine

#: Risk configuration of ``finam run`` without ``--risk-config``: stop-sizing risks 1 % of equity; no limits
#: beyond the fail-closed checks (price, instrument, FX rate, trading state).
DEFAULT_RISK = {"version": "finam-run-default-1", "risk_fraction": "0.01"}

Say = Callable[[str], None]


def run_file(dsn: str, path: Path, portfolio: str, *, risk_config: Path | None = None,
             snapshot_every: int = 100, say: Say = print) -> str:
    """Check every line of ``path``, then publish it to ``portfolio-<portfolio>`` through the engine.

    Returns the final state hash. InputError (nothing written) when any line is bad.
    """
    if not portfolio or not portfolio.strip():
        raise InvalidArgument(f"invalid argument: the portfolio id must be a non-empty text, got {portfolio!r}")
    stream = portfolio_stream(portfolio)
    config = RiskConfig.load(risk_config) if risk_config else RiskConfig.from_mapping(DEFAULT_RISK)
    with create_pool(dsn, max_size=4) as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        events = read_events(path, stream)
        already = {stored.id for stored in store.iter_stream(stream)}
        fresh = [item for item in events if item.event.event_id not in already]
        check_against(repository.load(stream), fresh, path)
        # The engine follows this portfolio only, from the events published from now on (its
        # checkpoints are per stream, so a run that was cut off catches up where it stopped).
        bus = EventBus(store, PostgresCheckpointStore(pool))
        TradingEngine(repository, PreTradeRiskEngine(config), PaperExecution()).subscribe(
            bus, stream=stream, from_end=True)
        bus.subscribe(f"snapshots:{stream}", SnapshotEveryN(repository, every=snapshot_every), stream=stream,
                      from_end=True)
        start = store.stream_version(stream)
        failures = sum(len(f.failures) for f in [bus.catch_up()])
        for item in fresh:
            failures += len(bus.publish(stream, item.event).dispatch.failures)
        written = list(store.iter_stream(stream, from_version=start + 1))
        counts = Counter(e.type for e in written)
        denials = Counter(code for e in written if e.type in ("OrderDenied", "SignalDenied")
                          for code in e.payload.get("reason_codes", []))
        state = repository.load(stream)
        say(f"{path}: {len(events)} events read, {len(fresh)} new, {len(events) - len(fresh)} already stored; "
            f"stream {stream!r} now at version {state.version}")
        say("written: " + (", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "nothing"))
        if denials:
            say("denied by reason: " + ", ".join(f"{c} {n}" for c, n in sorted(denials.items())))
        say(f"risk config {config.version} ({config.config_hash[:12]}); handler failures: {failures}")
        _say_state(state, say)
        return state.state_hash()


def list_streams(dsn: str, category: str | None, say: Say = print) -> int:
    """One line per stream (of ``category``): name, version, last event type and time."""
    with create_pool(dsn, max_size=1) as pool, pool.connection() as connection:
        rows = connection.execute(
            "SELECT stream, version, last_type, last_event_at FROM finam.streams "
            "WHERE %(category)s::text IS NULL OR category = %(category)s ORDER BY stream",
            {"category": category}).fetchall()
    for stream, version, last_type, last_at in rows:
        say(f"{stream}\tversion {version}\t{last_type}\t{last_at.isoformat()}")
    say(f"{len(rows)} stream(s)")
    return len(rows)


def show_stream(dsn: str, stream: str, *, from_version: int = 1, limit: int = 100, say: Say = print) -> int:
    """The events of ``stream`` from ``from_version``: version, position, type, payload (canonical JSON)."""
    with create_pool(dsn, max_size=1) as pool:
        events = PostgresEventStore(pool).read_stream(stream, from_version, limit)
    for event in events:
        payload = json.dumps(event.payload, sort_keys=True, separators=(",", ":"), default=str)
        say(f"v{event.version}\tpos {event.position}\t{event.type}\t{payload}")
    if not events:
        say(f"no events in {stream!r} from version {from_version}")
    return len(events)


def replay_stream(dsn: str, stream: str, say: Say = print) -> bool:
    """Rebuild a portfolio from snapshot + tail and from a full replay; True when the hashes are identical."""
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool), TRADING_EVENTS)
        snapshot = repository.snapshots.load(stream)
        booted = repository.load(stream)
        full = repository.load(stream, use_snapshot=False)
    same = booted.state_hash() == full.state_hash()
    at = snapshot.version if snapshot else 0
    say(f"{stream}: version {full.version}; snapshot at {at or 'none'} + {booted.version - at} events -> "
        f"{booted.state_hash()}")
    say(f"{stream}: full replay of {full.version} events -> {full.state_hash()}; identical: {same}")
    _say_state(full, say)
    return same


def _say_state(state, say: Say) -> None:
    try:
        value = state.valuation()
    except Exception as error:  # noqa: BLE001 - a valuation needs rates; the state itself is fine
        say(f"valuation unavailable: {error}")
        return
    say(f"equity {value.equity} {value.base_currency}; cash {value.cash}; realized {value.realized_pnl}; "
        f"unrealized {value.unrealized_pnl}; fees {value.fees}; trading {state.trading_state.value}")
    for name, row in value.instruments.items():
        if row.quantity:
            say(f"  {name}\t{row.quantity}\t@ {row.mark}\tmarket value {row.market_value} {row.currency}")
    say(f"state_hash {state.state_hash()}")
