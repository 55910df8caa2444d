"""EventTail: follows read_all, wakes up on NOTIFY, registers and renews itself, polls as a fallback."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg

from finam_thin.persistence import NewEvent
from finam_thin.subscription import EventTail


def event(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Ticked", {"n": str(n)})


def listener_row(db, name):
    return db.execute("SELECT expires_at FROM finam.listeners WHERE name = %s AND expires_at > now()",
                      (name,)).fetchone()


def test_tail_delivers_stored_then_new_events_exactly_once(store):
    before = [store.append("tick-1", event(n))[0] for n in range(3)]
    with EventTail(store, "tail-once", page_size=2, poll_interval=0.2) as tail:
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            seen += tail.poll()
        after = store.append("tick-2", [event(n) for n in range(3, 6)])
        while len(seen) < 6 and time.monotonic() < deadline:
            seen += tail.poll()
        assert tail.poll(timeout=0.3) == []
    ids = [e.id for e in seen]
    assert ids == [r.id for r in before + after]
    assert tail.position == seen[-1].position


def test_tail_wakes_on_notification_long_before_its_poll_interval(store, db):
    with EventTail(store, "tail-wake", poll_interval=30.0) as tail:
        assert tail.poll(timeout=0.1) == []          # caught up; now registered and listening
        assert listener_row(db, "tail-wake") is not None
        appended = threading.Timer(0.3, lambda: store.append("tick-1", event(1)))
        appended.start()
        started = time.monotonic()
        page = tail.poll()                           # would sleep 30 s without the notification
        waited = time.monotonic() - started
        appended.join()
    assert [e.stream for e in page] == ["tick-1"]
    assert waited < 10


def test_tail_renews_its_registration_and_withdraws_it_on_close(store, db):
    tail = EventTail(store, "tail-renew", ttl_seconds=1.0, poll_interval=0.05)
    tail.poll()
    first = listener_row(db, "tail-renew")
    assert first is not None
    time.sleep(0.6)                                  # past half the ttl
    tail.poll()
    renewed = listener_row(db, "tail-renew")
    assert renewed is not None and renewed[0] > first[0]
    tail.close()
    assert db.execute("SELECT count(*) FROM finam.listeners WHERE name = 'tail-renew'").fetchone()[0] == 0


def test_tail_without_notifications_still_polls(store, db):
    with EventTail(store, "tail-poll", poll_interval=0.1, listen=False) as tail:
        assert tail.poll() == []
        store.append("tick-1", event(1))
        deadline = time.monotonic() + 10
        page = []
        while not page and time.monotonic() < deadline:
            page = tail.poll()
        assert [e.stream for e in page] == ["tick-1"]
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 0


def test_appends_notify_only_while_a_tail_listens(store, dsn):
    """A registered tail makes appends send NOTIFY; once it closed, they stop."""
    with psycopg.connect(dsn, autocommit=True) as spy:
        spy.execute("LISTEN finam_events")
        with EventTail(store, "tail-gate", poll_interval=0.05) as tail:
            tail.poll()
            store.append("tick-on", event(1))
            assert [n.payload for n in spy.notifies(timeout=5, stop_after=1)] == ["tick-on"]
        store.append("tick-off", event(2))
        assert list(spy.notifies(timeout=0.5)) == []
