"""Real concurrency against a real PostgreSQL: threads and processes racing on the same streams.

Every test ends with the same audit: no acknowledged event is lost, none is
stored twice, every stream's versions are exactly 1..n, and nothing was stored
that no writer was told about.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from uuid import UUID, uuid4

import pytest

from finam_thin.database import create_pool
from finam_thin.errors import WrongExpectedVersion
from finam_thin.persistence import AppendResult, NewEvent
from finam_thin.postgres import PostgresEventStore


# -- helpers (module level: the spawned processes import them) --------------


def make_event(writer: str, n: int) -> NewEvent:
    return NewEvent(uuid4(), "Tick", {"writer": writer, "n": n, "px": "1.25"})


def append_with_retries(store: PostgresEventStore, stream: str, events: list[NewEvent],
                        max_attempts: int = 10_000) -> tuple[list[AppendResult], int]:
    """Append ``events`` at the stream's current version, re-reading it after each WrongExpectedVersion.

    Returns the results and the number of WrongExpectedVersion retries."""
    retries = 0
    expected = store.stream_version(stream)
    for _ in range(max_attempts):
        try:
            return store.append(stream, events if len(events) > 1 else events[0], expected_version=expected), retries
        except WrongExpectedVersion as error:
            assert error.stream == stream
            assert error.expected == expected
            assert error.actual > expected  # versions only grow
            retries += 1
            expected = store.stream_version(stream)
    raise AssertionError(f"no append to {stream} after {max_attempts} attempts")


def process_writer(dsn: str, writer: str, streams: list[str], appends: int, seed: int) -> list[tuple]:
    """Body of a spawned process: its own pool, ``appends`` appends (singles and batches) over ``streams``.

    Returns (id, stream, version, position, duplicate) for every acknowledged event."""
    rng = random.Random(seed)
    acknowledged = []
    pool = create_pool(dsn, min_size=1, max_size=2, name=f"writer-{writer}")
    try:
        store = PostgresEventStore(pool)
        for n in range(appends):
            stream = rng.choice(streams)
            size = 1 if rng.random() < 0.7 else rng.randint(2, 4)
            events = [make_event(writer, n * 10 + k) for k in range(size)]
            results, _ = append_with_retries(store, stream, events)
            assert [r.id for r in results] == [e.id for e in events]
            acknowledged += [(str(r.id), stream, r.version, r.position, r.duplicate) for r in results]
    finally:
        pool.close()
    return acknowledged


def audit(db, acknowledged: list[tuple[UUID, str, int, int]]) -> None:
    """(id, stream, version, position) acknowledged to writers == what is stored, and versions are 1..n."""
    ids = [a[0] for a in acknowledged]
    duplicated = [i for i, c in Counter(ids).items() if c > 1]
    assert duplicated == [], f"ids acknowledged more than once: {duplicated[:5]}"
    stored = db.execute("SELECT id, stream, version, position FROM finam.events").fetchall()
    stored_ids = [row[0] for row in stored]
    assert len(stored_ids) == len(set(stored_ids))
    assert sorted(stored, key=lambda r: r[3]) == sorted(acknowledged, key=lambda r: r[3]), \
        "stored events differ from acknowledged ones (lost, extra, or at another version/position)"
    versions = defaultdict(list)
    for _, stream, version, _ in stored:
        versions[stream].append(version)
    for stream, vs in versions.items():
        assert sorted(vs) == list(range(1, len(vs) + 1)), f"versions of {stream} are not 1..{len(vs)}"
    positions = [row[3] for row in stored]
    assert len(positions) == len(set(positions))


def cutoff_passed_all_events(store: PostgresEventStore) -> bool:
    """True when read_all's cutoff (pg_snapshot_xmin: the oldest write transaction still running anywhere on
    the server, other databases included) is above the transaction of every stored event."""
    with store.pool.connection() as conn:
        return conn.execute("SELECT coalesce(max(transaction_id), '0'::xid8) < "
                            "pg_snapshot_xmin(pg_current_snapshot()) FROM finam.events").fetchone()[0]


def run_threads(count: int, target, *args) -> list:
    """Run ``target(i, *args)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)

    def body(i):
        barrier.wait(timeout=30)
        return target(i, *args)

    with ThreadPoolExecutor(max_workers=count) as executor:
        futures = [executor.submit(body, i) for i in range(count)]
        return [f.result(timeout=300) for f in futures]


# -- threads -----------------------------------------------------------------


def hot_stream_writer(i: int, store: PostgresEventStore, stream: str, appends: int):
    acknowledged, retries = [], 0
    for n in range(appends):
        event = make_event(f"t{i}", n)
        results, r = append_with_retries(store, stream, [event])
        retries += r
        assert results[0].id == event.id and results[0].duplicate is False
        acknowledged.append((event.id, stream, results[0].version, results[0].position))
    return acknowledged, retries


def _threads_on_one_stream(store, db, threads: int, appends: int):
    stream = "portfolio-hot"
    outcomes = run_threads(threads, hot_stream_writer, store, stream, appends)

    acknowledged = [a for acks, _ in outcomes for a in acks]
    assert len(acknowledged) == threads * appends
    audit(db, acknowledged)
    assert sorted(a[2] for a in acknowledged) == list(range(1, threads * appends + 1))
    assert store.stream_version(stream) == threads * appends
    # The stream really was contended (otherwise this test proves nothing about concurrency).
    assert sum(r for _, r in outcomes) > 0
    # Each writer's own events are in its append order within the stream.
    for acks, _ in outcomes:
        assert [a[2] for a in acks] == sorted(a[2] for a in acks)


def test_threads_on_one_stream_with_expected_versions(store, db):
    _threads_on_one_stream(store, db, threads=8, appends=200)


@pytest.mark.slow
def test_threads_on_one_stream_with_expected_versions_long(store, db):
    _threads_on_one_stream(store, db, threads=10, appends=1000)


def own_stream_writer(i: int, store: PostgresEventStore, rounds: int):
    """Singles and batches on the writer's own stream, tracking the version itself: never wrong."""
    rng = random.Random(i)
    stream = f"account-{i}"
    version, acknowledged = 0, []
    for n in range(rounds):
        events = [make_event(f"t{i}", n * 10 + k) for k in range(rng.choice([1, 1, 2, 3, 5]))]
        results = store.append(stream, events[0] if len(events) == 1 else events, expected_version=version)
        assert [r.id for r in results] == [e.id for e in events]
        assert [r.version for r in results] == list(range(version + 1, version + len(events) + 1))
        version += len(events)
        acknowledged += [(r.id, stream, r.version, r.position) for r in results]
    return acknowledged


def test_threads_on_different_streams_mixing_singles_and_batches(store, db):
    outcomes = run_threads(8, own_stream_writer, store, 60)

    acknowledged = [a for acks in outcomes for a in acks]
    audit(db, acknowledged)
    for i, acks in enumerate(outcomes):
        assert store.stream_version(f"account-{i}") == len(acks)
        assert [e.id for e in store.iter_stream(f"account-{i}", page_size=50)] == [a[0] for a in acks]


def shared_stream_mixed_writer(i: int, store: PostgresEventStore, streams: list[str], rounds: int):
    rng = random.Random(100 + i)
    acknowledged = []
    for n in range(rounds):
        stream = rng.choice(streams)
        events = [make_event(f"t{i}", n * 10 + k) for k in range(rng.choice([1, 1, 2, 4]))]
        results, _ = append_with_retries(store, stream, events)
        assert [r.id for r in results] == [e.id for e in events]
        assert all(not r.duplicate for r in results)
        versions = [r.version for r in results]
        assert versions == list(range(versions[0], versions[0] + len(events)))  # a batch is contiguous
        acknowledged += [(r.id, stream, r.version, r.position) for r in results]
    return acknowledged


def test_threads_on_shared_streams_mixing_singles_and_batches(store, db):
    streams = ["book-1", "book-2"]
    outcomes = run_threads(6, shared_stream_mixed_writer, store, streams, 60)

    acknowledged = [a for acks in outcomes for a in acks]
    audit(db, acknowledged)
    assert sum(store.stream_version(s) for s in streams) == len(acknowledged)


# -- processes ---------------------------------------------------------------


def _processes_on_hot_streams(dsn, db, processes: int, appends: int):
    streams = ["hot-1", "hot-2", "hot-3"]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as executor:
        futures = [executor.submit(process_writer, dsn, f"p{p}", streams, appends, p) for p in range(processes)]
        outcomes = [f.result(timeout=300) for f in futures]

    acknowledged = [(UUID(i), s, v, pos) for acks in outcomes for (i, s, v, pos, dup) in acks]
    assert not any(dup for acks in outcomes for (*_, dup) in acks)
    assert all(len({a[0] for a in acks}) >= appends for acks in outcomes)
    audit(db, acknowledged)
    stored_streams = {row[0] for row in db.execute("SELECT DISTINCT stream FROM finam.events")}
    assert stored_streams == set(streams)


def test_processes_on_three_hot_streams(dsn, db):
    _processes_on_hot_streams(dsn, db, processes=4, appends=300)


@pytest.mark.slow
def test_processes_on_three_hot_streams_long(dsn, db):
    _processes_on_hot_streams(dsn, db, processes=8, appends=1500)


# -- idempotent retries racing -----------------------------------------------


def test_the_same_batch_appended_by_two_threads_at_once_is_written_once(store, db):
    rounds = 25
    for round_ in range(rounds):
        stream = f"race-{round_}"
        store.append(stream, make_event("seed", round_))  # the stream already exists
        batch = [make_event("race", k) for k in range(3 if round_ % 2 else 1)]
        expected = 1 if round_ % 3 else None  # with and without an expected version

        outcomes = run_threads(2, lambda i: store.append(stream, batch, expected_version=expected))

        first, second = outcomes
        assert sorted([[r.duplicate for r in first], [r.duplicate for r in second]]) == \
            [[False] * len(batch), [True] * len(batch)], f"round {round_}: exactly one call must write"
        assert [(r.id, r.version, r.position) for r in first] == [(r.id, r.version, r.position) for r in second]
        assert [r.version for r in first] == list(range(2, 2 + len(batch)))
        assert count_stream(db, stream) == 1 + len(batch)
    assert db.execute("SELECT count(*) FROM finam.events").fetchone()[0] == sum(
        1 + (3 if r % 2 else 1) for r in range(rounds))


def test_the_same_batch_appended_by_many_threads_at_once_is_written_once(store, db):
    batch = [make_event("race", k) for k in range(5)]
    outcomes = run_threads(8, lambda i: store.append("race-many", batch, expected_version=0))

    writers = [o for o in outcomes if not o[0].duplicate]
    assert len(writers) == 1
    original = [(r.id, r.version, r.position) for r in writers[0]]
    for outcome in outcomes:
        assert [(r.id, r.version, r.position) for r in outcome] == original
        assert len({r.duplicate for r in outcome}) == 1  # never a mix within one batch
    assert count_stream(db, "race-many") == 5


def count_stream(db, stream: str) -> int:
    return db.execute("SELECT count(*) FROM finam.events WHERE stream = %s", (stream,)).fetchone()[0]


# -- a tailing reader under concurrent writers -------------------------------


def _tailing_reader_sees_every_event_once(store, db, writers: int, rounds: int, page: int):
    done = threading.Event()
    seen: list[UUID] = []
    reader_errors: list[BaseException] = []
    reads = Counter()

    def reader():
        try:
            after = 0
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                # Observed BEFORE the read: once every writer is done and read_all's cutoff has passed
                # every stored event, an empty read means the reader has everything it will ever get.
                finished = done.is_set() and cutoff_passed_all_events(store)
                events = store.read_all(after_position=after, max_count=page)
                reads["calls"] += 1
                if events:
                    reads["while_writing" if not finished else "after_writing"] += 1
                    seen.extend(e.id for e in events)
                    after = events[-1].position
                    continue
                if finished:
                    return
                time.sleep(0.002)
            raise AssertionError("reader did not finish")
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            reader_errors.append(error)

    def writer(i):
        rng = random.Random(7 + i)
        acknowledged = []
        for n in range(rounds):
            stream = f"tail{i % 3}-{rng.randint(1, 3)}"
            events = [make_event(f"w{i}", n * 10 + k) for k in range(rng.choice([1, 1, 3]))]
            if rng.random() < 0.5:
                results, _ = append_with_retries(store, stream, events)
            else:
                results = store.append(stream, events)
            acknowledged += [(r.id, stream, r.version, r.position) for r in results]
        return acknowledged

    thread = threading.Thread(target=reader, name="tailing-reader")
    thread.start()
    try:
        outcomes = run_threads(writers, writer)
    finally:
        done.set()
        thread.join(timeout=300)
    assert not thread.is_alive()
    assert reader_errors == []

    acknowledged = [a for acks in outcomes for a in acks]
    audit(db, acknowledged)
    repeated = [i for i, c in Counter(seen).items() if c > 1]
    assert repeated == [], f"the reader saw {len(repeated)} events twice"
    stored = {row[0] for row in db.execute("SELECT id FROM finam.events")}
    missed = stored - set(seen)
    assert missed == set(), f"the reader skipped {len(missed)} of {len(stored)} events"
    assert set(seen) == {a[0] for a in acknowledged}
    # The reader really tailed: it got pages while writers were still writing, not one sweep at the end.
    assert reads["while_writing"] > 0


def test_tailing_reader_sees_every_event_exactly_once(store, db):
    _tailing_reader_sees_every_event_once(store, db, writers=6, rounds=150, page=7)


@pytest.mark.slow
def test_tailing_reader_sees_every_event_exactly_once_long(store, db):
    _tailing_reader_sees_every_event_once(store, db, writers=8, rounds=1000, page=5)
