"""``finam demo`` end to end on a real PostgreSQL: a small seeded session through the real engine."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from rich.console import Console

from finam_thin.database import create_pool
from finam_thin.demo import INSTRUMENTS, run_demo
from finam_thin.events import (
    TRADING_EVENTS,
    InstrumentRegistered,
    OrderDenied,
    OrderSubmitted,
    PortfolioOpened,
    Side,
    StrategySignalEvent,
    TradingDayStarted,
)
from finam_thin.postgres import PostgresEventStore, PostgresSnapshotStore
from finam_thin.repository import PortfolioRepository
from test_cli import ok, run_finam

SMALL = {"signals": 300, "days": 2}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_a_small_session_runs_through_the_engine_and_rebuilds_with_the_same_hash(dsn, tmp_path):
    console = quiet()
    report = tmp_path / "report.html"
    result = run_demo(dsn, seed=42, report_path=report, console=console, **SMALL)
    output = console.file.getvalue()

    assert result.stream == "portfolio-demo-42-0"
    assert result.identical and "identical" in output
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        full = repository.load(result.stream, use_snapshot=False)  # folds every event without error
        assert full.version == result.events == store.stream_version(result.stream)
        assert full.state_hash() == result.restart_hash == result.state_hash
        assert repository.load(result.stream).state_hash() == full.state_hash()
        assert result.snapshot_version is not None and result.snapshot_version > 0
        assert result.tail_length == full.version - result.snapshot_version
        events = [TRADING_EVENTS.decode(stored).event for stored in store.iter_stream(result.stream)]
        with pool.connection() as connection:  # the demo's handlers cleaned up their checkpoints
            assert connection.execute("SELECT count(*) FROM finam.checkpoints WHERE name LIKE 'demo:%'"
                                      ).fetchone()[0] == 0

    # the market: >= 10 instruments over >= 3 asset classes and 2 currencies
    registered = [e for e in events if isinstance(e, InstrumentRegistered)]
    assert len(registered) >= 10
    assert len({e.asset_class for e in registered}) >= 3 and len({e.currency for e in registered}) >= 2
    assert full.clusters and full.cluster_map_version == 1
    assert sum(isinstance(e, StrategySignalEvent) for e in events) == SMALL["signals"]

    # risk: approvals and denials, for several reasons; counts agree with the stream
    submitted = sum(isinstance(e, OrderSubmitted) for e in events)
    denied = [e for e in events if isinstance(e, OrderDenied)]
    assert result.approved == submitted > 0 and result.denied == len(denied) > 0
    reasons = Counter(code for e in denied for code in e.reason_codes)
    assert dict(reasons) == result.denied_by_reason and len(reasons) >= 3
    states = {state for _, state, _ in result.state_changes}
    assert {"halted", "reducing", "active"} <= states

    # at least one day boundary, recorded by the engine itself
    days = [e.trading_day for e in events if isinstance(e, TradingDayStarted)]
    assert len(days) >= 2 and days == sorted(days) and days == result.trading_days

    # the report
    assert result.report_path == report.resolve() and report.exists()
    html = report.read_text(encoding="utf-8")
    assert 'id="equity-curve"' in html and 'data-series="portfolio-equity"' in html and "<svg" in html
    assert all(f'data-series="{asset_class}"' in html for asset_class in ("crypto", "equity", "future"))
    assert result.state_hash in html


def test_the_same_seed_gives_the_same_hash_and_another_seed_another(dsn, tmp_path):
    first = run_demo(dsn, seed=7, report_path=None, console=quiet(), **SMALL)
    again = run_demo(dsn, seed=7, report_path=None, console=quiet(), **SMALL)
    other = run_demo(dsn, seed=8, report_path=None, console=quiet(), **SMALL)
    assert (first.stream, again.stream, other.stream) == ("portfolio-demo-7-0", "portfolio-demo-7-1",
                                                          "portfolio-demo-8-0")
    assert first.state_hash == again.state_hash == again.restart_hash
    assert (first.approved, first.denied_by_reason) == (again.approved, again.denied_by_reason)
    assert other.state_hash != first.state_hash


def test_the_demo_leaves_other_portfolios_alone(dsn, tmp_path):
    """Its handlers act on its own stream only, and start after what was already stored."""
    at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        store.append("portfolio-other", [TRADING_EVENTS.encode(e) for e in (
            PortfolioOpened(occurred_at=at, base_currency="USD"),
            InstrumentRegistered(occurred_at=at, instrument=INSTRUMENTS[0].symbol, asset_class="equity",
                                 currency="USD"),
            StrategySignalEvent(occurred_at=at, strategy="someone-else", instrument=INSTRUMENTS[0].symbol,
                                side=Side.BUY, quantity=Decimal(1)))], expected_version=0)
        run_demo(dsn, seed=1, signals=60, days=1, report_path=None, console=quiet())
        run_demo(dsn, seed=1, signals=60, days=1, report_path=None, console=quiet())
        assert store.stream_version("portfolio-other") == 3


def test_finam_demo_command(blank_dsn, tmp_path):
    """The CLI migrates an empty database first, prints the tables and 'identical', writes the report."""
    result = ok(run_finam("demo", "--signals", "200", dsn=blank_dsn, cwd=tmp_path))
    assert "identical" in result.stdout
    assert "Denials by reason code" in result.stdout and "Trading state changes" in result.stdout
    report = tmp_path / "finam-demo-report.html"
    assert report.exists() and 'id="equity-curve"' in report.read_text(encoding="utf-8")
    other = ok(run_finam("demo", "--signals", "200", "--seed", "3", "--report", str(tmp_path / "r" / "x.html"),
                         dsn=blank_dsn, cwd=tmp_path))
    assert "portfolio-demo-3-0" in other.stdout and (tmp_path / "r" / "x.html").exists()
    bad = run_finam("demo", "--signals", "0", dsn=blank_dsn, cwd=tmp_path)
    assert bad.returncode == 2
