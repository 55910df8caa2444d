"""Deterministic replay, snapshot bootstrap and restart safety (the seed's core tests), crash included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import fields
from decimal import Decimal

import pytest
from conftest import REPO_ROOT
from pipeline import inputs, order_desk, venue

from finam_thin import migrations
from finam_thin.bus import EventBus
from finam_thin.contract import EventRegistry, UnknownEventType
from finam_thin.database import create_pool
import finam_thin.events
from finam_thin.events import TRADING_EVENTS
from finam_thin.persistence import Snapshot
from finam_thin.portfolio import STATE_SCHEMA_VERSION, PortfolioState
from finam_thin.postgres import PostgresCheckpointStore, PostgresEventStore, PostgresSnapshotStore
from finam_thin.repository import PortfolioRepository, SnapshotEveryN

WORKER = REPO_ROOT / "tests" / "pipeline.py"


def engine(pool, *, snapshot_every: int = 10):
    """A freshly started engine on ``pool``: bus with the pipeline's handlers, and a repository."""
    store = PostgresEventStore(pool)
    repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
    bus = EventBus(store, PostgresCheckpointStore(pool))
    bus.subscribe("order-desk", order_desk)
    bus.subscribe("venue", venue)
    bus.subscribe("snapshots", SnapshotEveryN(repository, every=snapshot_every), category="portfolio")
    return bus, repository


def test_engine_restart_simulation(dsn):
    """Publish, stop, start again: the rebuilt state has the same hash, and work continues from there."""
    events = inputs(40)
    with create_pool(dsn) as pool:
        bus, repository = engine(pool)
        assert bus.catch_up().ok
        for event in events[:25]:
            assert bus.publish("portfolio-7", event).dispatch.ok
        before = repository.load("portfolio-7")
    with create_pool(dsn) as pool:  # the restart: new pool, new objects, nothing kept in memory
        bus, repository = engine(pool)
        assert bus.catch_up().handled == {}
        after = repository.load("portfolio-7")
        assert after.state_hash() == before.state_hash() and after.version == before.version
        assert after == repository.load("portfolio-7", use_snapshot=False)
        for event in events:  # re-publishing what was already stored is an idempotent no-op
            assert bus.publish("portfolio-7", event).dispatch.ok
        final = repository.load("portfolio-7")
        head = bus.store.stream_version("portfolio-7")
    # an engine that never stopped ends in the same state
    with create_pool(dsn) as pool:
        bus, repository = engine(pool)
        for event in events:
            bus.publish("portfolio-8", _recreated(event))
        uninterrupted = repository.load("portfolio-8")
    assert final.state_hash() == uninterrupted.state_hash()
    assert final.version == uninterrupted.version == head


def _recreated(event):
    """The same fact with a new id (so it can live in a second stream of the same database)."""
    values = {f.name: getattr(event, f.name) for f in fields(event)
              if f.name not in ("event_id", "causation_id", "correlation_id")}
    return type(event)(**values)


def test_snapshot_bootstrap(store, snapshot_store):
    """Snapshot + tail rebuilds the state a full replay builds — and really starts from the snapshot."""
    stream = "portfolio-boot"
    events = inputs(30)
    store.append(stream, [TRADING_EVENTS.encode(e) for e in events[:20]])
    repository = PortfolioRepository(store, snapshot_store)
    assert repository.save_snapshot(stream, repository.load(stream))
    store.append(stream, [TRADING_EVENTS.encode(e) for e in events[20:]])

    full = PortfolioState.fold(events)
    booted = repository.load(stream)
    assert booted.state_hash() == full.state_hash() == repository.load(stream, use_snapshot=False).state_hash()
    assert booted.version == 30

    # proof that the snapshot was used: a registry that cannot decode PortfolioOpened (version 1)
    # still rebuilds from the snapshot at 20, while a full replay fails on the first event
    partial = EventRegistry()
    for name in TRADING_EVENTS.types():
        if name != "PortfolioOpened":
            partial.register(getattr(finam_thin.events, name))
    snapshot_only = PortfolioRepository(store, snapshot_store, partial)
    assert snapshot_only.load(stream).state_hash() == full.state_hash()
    with pytest.raises(UnknownEventType):
        snapshot_only.load(stream, use_snapshot=False)


def test_a_snapshot_of_another_layout_or_a_broken_one_is_ignored(store, snapshot_store, db):
    stream = "portfolio-layout"
    events = inputs(15)
    store.append(stream, [TRADING_EVENTS.encode(e) for e in events])
    expected = PortfolioState.fold(events).state_hash()
    repository = PortfolioRepository(store, snapshot_store)
    # a future layout, with a state this code could not read: ignored
    snapshot_store.save(Snapshot(stream, 15, {"layout": "v99"}, schema_version=STATE_SCHEMA_VERSION + 1))
    assert repository.load(stream).state_hash() == expected
    # this layout, but a state that does not load (hand-edited, truncated): rebuilt from events
    snapshot_store.save(Snapshot(stream, 10, {"cash": {}}, schema_version=STATE_SCHEMA_VERSION))
    assert repository.load(stream).state_hash() == expected


def test_idempotent_append_through_the_bus_runs_handlers_once(dsn):
    calls = []
    with create_pool(dsn) as pool:
        bus = EventBus(PostgresEventStore(pool), PostgresCheckpointStore(pool))
        bus.subscribe("count", lambda r: calls.append(r.event.event_id))
        events = inputs(5)
        first = bus.publish("portfolio-idem", events, expected_version=0)
        again = bus.publish("portfolio-idem", events, expected_version=0)
        assert [r.duplicate for r in first.appended] == [False] * 5
        assert [r.duplicate for r in again.appended] == [True] * 5
        assert [(r.version, r.position) for r in again.appended] == [(r.version, r.position) for r in first.appended]
        assert calls == [e.event_id for e in events]
        assert bus.store.stream_version("portfolio-idem") == 5


# -- crash simulation: a real subprocess, killed with SIGKILL -------------------------------

def run_worker(dsn: str, stream: str, count: int, crash_point: str = "none", crash_at: int = 0):
    env = {**os.environ, "POSTGRES_DSN": dsn}
    return subprocess.run([sys.executable, str(WORKER), stream, str(count), crash_point, str(crash_at)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def reference_dsn(blank_dsn):
    """A second migrated database: the uninterrupted run writes the same event ids there."""
    migrations.apply(blank_dsn)
    return blank_dsn


@pytest.mark.parametrize("crash_point, crash_at", [
    ("before-handlers", 12),    # committed, no handler called yet
    ("between-handlers", 21),   # the order desk's output committed, the venue's not started
    ("inside-handler", 17),     # the venue computed its output; its transaction never committed
])
def test_a_process_killed_between_commit_and_handlers_catches_up_exactly_once(dsn, reference_dsn, db,
                                                                              crash_point, crash_at):
    count, stream = 40, "portfolio-crash"
    crashed = run_worker(dsn, stream, count, crash_point, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    stored_before_restart = db.execute("SELECT count(*) FROM finam.events").fetchone()[0]
    assert stored_before_restart > 0

    restarted = run_worker(dsn, stream, count)
    assert restarted.returncode == 0, restarted.stderr
    result = json.loads(restarted.stdout)
    assert sum(result["caught_up_on_start"].values()) > 0, "the restart had nothing to catch up on"

    reference = run_worker(reference_dsn, stream, count)
    assert reference.returncode == 0, reference.stderr
    expected = json.loads(reference.stdout)
    assert result["hash"] == expected["hash"] and result["version"] == expected["version"]

    # exactly once: every signal has one order, every order one submission, acceptance and two fills
    counts = dict(db.execute("SELECT type, count(*) FROM finam.events GROUP BY type").fetchall())
    signals = counts["StrategySignalEvent"]
    assert signals > 0
    for output in ("OrderRequested", "OrderSubmitted", "OrderAccepted", "OrderPartiallyFilled", "OrderFilled"):
        assert counts[output] == signals, (output, counts)
    caused = db.execute("SELECT metadata->>'causation_id', type, count(*) FROM finam.events "
                        "WHERE metadata->>'causation_id' IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
    assert caused == []
    # every handler's checkpoint is at the end of read_all
    end = db.execute("SELECT position FROM finam.events ORDER BY transaction_id DESC, position DESC LIMIT 1").fetchone()
    checkpoints = dict(db.execute("SELECT name, position FROM finam.checkpoints").fetchall())
    for name in ("order-desk", "venue", "snapshots"):
        assert checkpoints[name] == end[0], (name, checkpoints)
    # snapshots were taken along the way and bootstrap to the same hash
    snapshot_version = db.execute("SELECT max(version) FROM finam.snapshots").fetchone()[0]
    assert snapshot_version and snapshot_version % 7 == 0
    assert Decimal(snapshot_version) <= result["version"]
