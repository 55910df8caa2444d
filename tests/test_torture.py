"""Concurrency torture: 8 writer processes and a tailing reader process on a few hot streams.

Every writer appends singles and batches (2-5) with expected versions, retrying on
FC001; pairs of writers append the same event ids at the same moment (released by
a barrier); a separate process follows ``read_all`` through ``EventTail`` the
whole time. The audit afterwards: no acknowledged event lost, none stored twice,
versions 1..n per stream, nothing stored that no writer was told about, each
racing pair acknowledged with the same version and position (exactly one of the
two wrote), and the reader received every stored event exactly once.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import time
import traceback
from collections import Counter
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from test_concurrency import append_with_retries, audit, cutoff_passed_all_events, make_event

from finam_thin.database import create_pool
from finam_thin.persistence import NewEvent
from finam_thin.postgres import PostgresEventStore
from finam_thin.subscription import EventTail

STREAMS = ["torture-1", "torture-2", "torture-3", "torture-4"]
WRITERS = 8  # in pairs (0, 1), (2, 3), ...: the partners of the duplicate-id races
DEADLINE_SECONDS = 600


# -- process bodies (module level: spawned processes import them) -----------------------------------


def race_batch(seed: int, pair: int, race: int) -> tuple[str, list[NewEvent]]:
    """The stream and events both partners of ``pair`` append in ``race``: same ids, same content."""
    rng = random.Random(seed * 1_000_003 + pair * 1_009 + race)
    size = 1 if rng.random() < 0.4 else rng.randint(2, 5)
    events = [NewEvent(uuid5(NAMESPACE_URL, f"finam-torture/{seed}/pair-{pair}/race-{race}/{k}"), "Tick",
                       {"pair": pair, "race": race, "k": k, "px": "1.25"}) for k in range(size)]
    return rng.choice(STREAMS), events


def race_points(appends: int, races: int) -> list[int]:
    """The operation numbers at which both partners of a pair race (the same for both)."""
    return [(k + 1) * appends // (races + 1) for k in range(races)]


def torture_writer(dsn: str, index: int, appends: int, races: int, seed: int, barrier, out) -> None:
    """``appends`` calls on the hot streams, singles and batches, each at the stream's version (FC001:
    re-read and retry); at the race points, the pair's shared batch right after its partner is ready.
    Puts ("writer", index, report) on ``out``, or ("error", index, traceback)."""
    try:
        rng = random.Random(seed * 100 + index)
        name = f"p{index}"
        points = set(race_points(appends, races))
        report = {"acks": [], "races": [], "retries": 0, "singles": 0, "batches": 0}
        pool = create_pool(dsn, min_size=1, max_size=1, name=f"torture-{name}")
        try:
            store = PostgresEventStore(pool)
            for n in range(appends):
                if n in points:
                    race = sorted(points).index(n)
                    stream, events = race_batch(seed, index // 2, race)
                    barrier.wait(timeout=DEADLINE_SECONDS)
                    results, retries = append_with_retries(store, stream, events)
                    report["races"].append((index // 2, race, stream,
                                            [(str(r.id), r.version, r.position, r.duplicate) for r in results]))
                else:
                    stream = rng.choice(STREAMS)
                    events = [make_event(name, n * 10 + k)
                              for k in range(1 if rng.random() < 0.6 else rng.randint(2, 5))]
                    results, retries = append_with_retries(store, stream, events)
                    report["acks"] += [(str(r.id), stream, r.version, r.position, r.duplicate) for r in results]
                assert [r.id for r in results] == [e.id for e in events]
                report["retries"] += retries
                report["singles" if len(events) == 1 else "batches"] += 1
        finally:
            pool.close()
        out.put(("writer", index, report))
    except BaseException:  # noqa: BLE001 - reported to the test process
        out.put(("error", index, traceback.format_exc()))


def tailing_reader(dsn: str, ready, done, out) -> None:
    """Follows read_all through EventTail (NOTIFY wake-ups, polling too) until the writers are done and
    read_all's horizon has passed every stored event. Puts ("reader", ids in order, stats) on ``out``."""
    try:
        pool = create_pool(dsn, min_size=1, max_size=2, name="torture-reader")
        seen: list[str] = []
        stats = Counter()
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            store = PostgresEventStore(pool)
            with EventTail(store, "torture-reader", page_size=50, poll_interval=0.05) as tail:
                tail.poll(timeout=0.01)  # registers the listener: writers NOTIFY from now on
                ready.set()
                while time.monotonic() < deadline:
                    # Observed BEFORE the read: once the writers are done and read_all's horizon has passed
                    # every stored event, an empty read means there is nothing more to come.
                    finished = done.is_set() and cutoff_passed_all_events(store)
                    page = tail.poll(timeout=0.05)
                    if page:
                        stats["pages_while_writing" if not done.is_set() else "pages_after_writing"] += 1
                        seen.extend(str(e.id) for e in page)
                        continue
                    if finished:
                        break
                else:
                    raise AssertionError("the tailing reader did not finish")
        finally:
            pool.close()
        out.put(("reader", seen, dict(stats)))
    except BaseException:  # noqa: BLE001 - reported to the test process
        ready.set()
        out.put(("error", "reader", traceback.format_exc()))


# -- the test ---------------------------------------------------------------------------------------


def _torture(dsn: str, db, capsys, appends: int, races: int, seed: int) -> None:
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    ready, done = context.Event(), context.Event()
    barriers = [context.Barrier(2) for _ in range(WRITERS // 2)]
    reader = context.Process(target=tailing_reader, args=(dsn, ready, done, out), name="torture-reader")
    writers = [context.Process(target=torture_writer, name=f"torture-writer-{i}",
                               args=(dsn, i, appends, races, seed, barriers[i // 2], out))
               for i in range(WRITERS)]
    reports, reader_result, errors = {}, None, []
    reader.start()
    try:
        assert ready.wait(timeout=120), "the reader did not start"
        for process in writers:
            process.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(reports) + len(errors) < WRITERS:  # drain the queue before joining (large results)
            try:
                kind, index, body = out.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"writers timed out; reported: {sorted(reports)}") from None
            if kind == "writer":
                reports[index] = body
            else:
                errors.append(f"{kind} {index}:\n{body}")
                for barrier in barriers:
                    barrier.abort()  # a partner waiting for the failed writer gives up at once
        done.set()
        if not errors:
            kind, *body = out.get(timeout=DEADLINE_SECONDS)
            if kind == "reader":
                reader_result = body
            else:
                errors.append(f"reader:\n{body[-1]}")
    finally:
        done.set()
        for process in [*writers, reader]:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
    assert errors == [], "\n".join(errors)
    assert all(p.exitcode == 0 for p in [*writers, reader])
    seen, reader_stats = reader_result

    # Racing pairs: both partners acknowledged, the same ids at the same versions and positions, and
    # exactly one of the two wrote (duplicate=False for every event of one call, True for the other's).
    race_calls: dict[tuple[int, int], list] = {}
    for report in reports.values():
        for pair, race, stream, results in report["races"]:
            race_calls.setdefault((pair, race), []).append((stream, results))
    race_events = []
    bad_races = []
    for key, calls in sorted(race_calls.items()):
        (stream_a, a), (stream_b, b) = calls
        flags = sorted([[dup for *_, dup in a], [dup for *_, dup in b]])
        if stream_a != stream_b or [r[:3] for r in a] != [r[:3] for r in b] \
                or flags != [[False] * len(a), [True] * len(a)]:
            bad_races.append((key, calls))
        race_events += [(UUID(i), stream_a, version, position) for i, version, position, _ in a]

    plain = [(UUID(i), s, v, p) for r in reports.values() for (i, s, v, p, _) in r["acks"]]
    acknowledged = plain + race_events
    stored = db.execute("SELECT id, stream, version, position FROM finam.events").fetchall()
    stored_ids = {row[0] for row in stored}
    ack_ids = {a[0] for a in acknowledged}
    counts = {
        "writers": WRITERS,
        "appends": sum(r["singles"] + r["batches"] for r in reports.values()),
        "singles": sum(r["singles"] for r in reports.values()),
        "batches": sum(r["batches"] for r in reports.values()),
        "events": len(stored),
        "fc001_retries": sum(r["retries"] for r in reports.values()),
        "duplicate_id_races": len(race_calls),
        "reader_events": len(seen),
        "lost": len(ack_ids - stored_ids),
        "dup": len(stored) - len(stored_ids) + sum(c - 1 for c in Counter(a[0] for a in acknowledged).values()),
        "unacknowledged": len(stored_ids - ack_ids),
        "reader_missed": len(stored_ids - {UUID(i) for i in seen}),
        "reader_repeated": sum(c - 1 for c in Counter(seen).values()),
        "seconds": round(time.monotonic() - started, 1),
    }
    summary = "[torture] " + " ".join(f"{k}={v}" for k, v in counts.items())
    with capsys.disabled():  # shown in every run, not only in the report of a failure
        print(f"\n{summary}", flush=True)

    assert bad_races == [], f"racing pairs not acknowledged alike: {bad_races[:3]}"
    assert not any(dup for r in reports.values() for *_, dup in r["acks"]), "a fresh id came back as duplicate"
    assert counts["lost"] == 0 and counts["dup"] == 0 and counts["unacknowledged"] == 0
    audit(db, acknowledged)  # the same, per (id, stream, version, position); versions 1..n; unique positions
    assert {row[1] for row in stored} == set(STREAMS)
    assert counts["reader_repeated"] == 0 and counts["reader_missed"] == 0
    assert {UUID(i) for i in seen} == stored_ids
    assert reader_stats.get("pages_while_writing", 0) > 0, "the reader only read after the writers were done"
    assert counts["fc001_retries"] > 0, "the streams were never contended: this run proves nothing"
    assert counts["appends"] == WRITERS * appends
    assert counts["singles"] > 0 and counts["batches"] > 0


def test_torture_short(dsn, db, capsys):
    """A few hundred appends: the default run exercises the whole torture path."""
    _torture(dsn, db, capsys, appends=40, races=3, seed=11)


@pytest.mark.reliability
def test_torture(dsn, db, capsys):
    """8 writer processes x 2,000 appends on 4 hot streams, 25 duplicate-id races per pair, a tailing reader."""
    _torture(dsn, db, capsys, appends=2000, races=25, seed=2026)
