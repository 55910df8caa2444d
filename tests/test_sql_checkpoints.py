"""Durable read_all checkpoints (SQL API 1.1.0): load_checkpoint, advance_checkpoint
(compare-and-set in the caller's transaction), delete_checkpoint, the readability
probe is_readable, and the Python PostgresCheckpointStore / PostgresEventStore.is_readable.

Real PostgreSQL, plain SQL with named arguments as any client would call it; the
concurrency cases use several connections, never mocks.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid

import psycopg
import pytest
from support import expect_error, message, store_state, wait_until_readable

from finam_thin import InvalidArgument, NewEvent, PostgresCheckpointStore

APPEND_EVENT = "SELECT * FROM finam.append_event(stream => %s, id => %s, type => %s, payload => %s::jsonb)"
LOAD = "SELECT finam.load_checkpoint(name => %s)"
ADVANCE = ("SELECT finam.advance_checkpoint(name => %s, from_position => %s::bigint,"
           " to_position => %s::bigint)")
DELETE = "SELECT finam.delete_checkpoint(name => %s)"
IS_READABLE = "SELECT finam.is_readable(event_position => %s::bigint)"


# -- helpers ----------------------------------------------------------------------------------


def append(conn, stream, payload=None) -> int:
    """append_event on ``conn`` (its transaction); returns the event's position."""
    payload = {"n": "1"} if payload is None else payload
    return conn.execute(APPEND_EVENT, (stream, uuid.uuid4(), "T", json.dumps(payload))).fetchone()[1]


def load(conn, name) -> int:
    return conn.execute(LOAD, (name,)).fetchone()[0]


def advance(conn, name, from_position, to_position) -> bool:
    return conn.execute(ADVANCE, (name, from_position, to_position)).fetchone()[0]


def checkpoints(conn) -> list[tuple]:
    """Every stored checkpoint, all columns."""
    return conn.execute(
        "SELECT name, position, transaction_id::text, updated_at FROM finam.checkpoints ORDER BY name").fetchall()


def expect_checkpoint_error(db, sql, params) -> psycopg.Error:
    """FC003, and neither events, snapshots nor checkpoints changed."""
    before = checkpoints(db)
    err = expect_error(db, "FC003", sql, params)
    assert checkpoints(db) == before, "a failed call must not move a checkpoint"
    return err


def event_transaction(conn, position) -> str:
    return conn.execute("SELECT transaction_id::text FROM finam.events WHERE position = %s",
                        (position,)).fetchone()[0]


@contextlib.contextmanager
def as_role(conn, role):
    conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
    try:
        yield conn
    finally:
        conn.execute("RESET ROLE")


def sqlstate_of(conn, sql, params=None):
    try:
        conn.execute(sql, params)
    except psycopg.Error as error:
        return error.sqlstate
    return None


def wait_for_lock_wait(db, pid, timeout=10.0):
    """Until the backend ``pid`` waits on a heavyweight lock; returns its wait event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                         (pid,)).fetchone()
        if row and row[0] == "Lock":
            return row
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock")


@pytest.fixture
def three(db):
    """Three committed, readable events (one transaction each); returns their positions in read_all order."""
    positions = [append(db, f"account-{i}") for i in range(3)]
    wait_until_readable(db)
    assert [r[0] for r in db.execute("SELECT position FROM finam.read_all()")] == positions
    return positions


# -- load / advance / delete ------------------------------------------------------------------


def test_load_of_an_absent_checkpoint_is_zero(db, three):
    assert load(db, "projection") == 0
    assert checkpoints(db) == []


def test_first_advance_from_zero_then_onwards(db, three):
    p1, p2, p3 = three
    assert advance(db, "projection", 0, p1) is True
    assert load(db, "projection") == p1
    [(name, position, transaction_id, updated_at)] = checkpoints(db)
    assert (name, position, transaction_id) == ("projection", p1, event_transaction(db, p1))
    assert updated_at is not None

    # Skipping events is allowed: the cursor only has to move forward in read_all order.
    assert advance(db, "projection", p1, p3) is True
    assert checkpoints(db)[0][:3] == ("projection", p3, event_transaction(db, p3))
    assert load(db, "projection") == p3

    # The stored position is a read_all cursor: nothing after p3 yet.
    assert db.execute("SELECT count(*) FROM finam.read_all(after_position => %s)",
                      (load(db, "projection"),)).fetchone()[0] == 0


def test_checkpoints_are_per_name(db, three):
    p1, p2, _ = three
    assert advance(db, "risk", 0, p1) is True
    assert advance(db, "execution", 0, p2) is True
    assert (load(db, "risk"), load(db, "execution"), load(db, "other")) == (p1, p2, 0)


def test_stale_advance_returns_false_and_writes_nothing(db, three):
    p1, p2, p3 = three
    assert advance(db, "projection", 0, p2) is True
    before = checkpoints(db)
    assert advance(db, "projection", p1, p3) is False  # the checkpoint is at p2, not p1
    assert advance(db, "projection", 0, p3) is False   # present: it no longer counts as 0
    assert advance(db, "projection", 0, p1) is False
    assert checkpoints(db) == before
    assert advance(db, "projection", p2, p3) is True


def test_delete_checkpoint_starts_over(db, three):
    p1, p2, _ = three
    assert db.execute(DELETE, ("projection",)).fetchone()[0] is False
    advance(db, "projection", 0, p2)
    advance(db, "other", 0, p1)
    assert db.execute(DELETE, ("projection",)).fetchone()[0] is True
    assert load(db, "projection") == 0
    assert [r[0] for r in checkpoints(db)] == ["other"]
    assert db.execute(DELETE, ("projection",)).fetchone()[0] is False
    # Rebuilding: the first advance is from 0 again; the old position no longer matches.
    assert advance(db, "projection", p1, p2) is False
    assert advance(db, "projection", 0, p1) is True
    assert load(db, "projection") == p1


# -- invalid arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "", "x" * 513], ids=["null", "empty", "513 characters"])
def test_invalid_names_are_fc003(db, three, name):
    advance(db, "projection", 0, three[0])
    err = expect_checkpoint_error(db, ADVANCE, (name, 0, three[0]))
    assert "checkpoint name" in message(err)
    expect_checkpoint_error(db, LOAD, (name,))
    expect_checkpoint_error(db, DELETE, (name,))


def test_longest_name_is_accepted(db, three):
    name = "x" * 512
    assert advance(db, name, 0, three[0]) is True
    assert load(db, name) == three[0]


@pytest.mark.parametrize("case", [
    "from null", "to null", "to unknown", "to zero", "to negative", "from unknown", "from negative",
    "to equals from", "to before from", "to long before from",
])
def test_invalid_positions_are_fc003_and_write_nothing(db, three, case):
    p1, p2, p3 = three
    unknown = p3 + 1000
    advance(db, "projection", 0, p2)
    from_position, to_position, expected = {
        "from null": (None, p3, "must not be NULL"),
        "to null": (p2, None, "must not be NULL"),
        "to unknown": (p2, unknown, f"to position {unknown}: no stored event"),
        "to zero": (0, 0, "to position 0: no stored event"),
        "to negative": (p2, -1, "to position -1: no stored event"),
        "from unknown": (unknown, p3, f"from position {unknown}: it is neither 0"),
        "from negative": (-1, p3, "from position -1: it is neither 0"),
        "to equals from": (p2, p2, f"from position {p2} to {p2}"),
        "to before from": (p2, p1, f"from position {p2} to {p1}"),
        "to long before from": (p3, p1, f"from position {p3} to {p1}"),
    }[case]
    err = expect_checkpoint_error(db, ADVANCE, ("projection", from_position, to_position))
    assert "'projection'" in message(err), message(err)
    assert expected in message(err), message(err)
    assert load(db, "projection") == p2


def test_advance_follows_read_all_order_not_position_order(db, dsn):
    """A's transaction began first, so A's later event (higher position) comes before B's in read_all."""
    with psycopg.connect(dsn) as a:                  # explicit transaction, kept open
        a_first = append(a, "slow-1")               # A now has a transaction id
        b = append(db, "fast-1")                    # B commits at once
        a_second = append(a, "slow-2")
        a.commit()
    assert a_first < b < a_second
    wait_until_readable(db)
    assert [r[0] for r in db.execute("SELECT position FROM finam.read_all()")] == [a_first, a_second, b]

    assert advance(db, "projection", 0, a_second) is True
    # From B to A's second event: a higher position, but read_all delivered it earlier.
    advance(db, "other", 0, b)
    err = expect_checkpoint_error(db, ADVANCE, ("other", b, a_second))
    assert f"from position {b} to {a_second}" in message(err)
    expect_checkpoint_error(db, ADVANCE, ("other", b, a_first))
    # From A's second event to B: a lower position, but next in read_all order.
    assert advance(db, "projection", a_second, b) is True
    assert load(db, "projection") == b
    assert checkpoints(db)[1][2] == event_transaction(db, b)


# -- concurrency and transactions -------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["first advance", "existing checkpoint"])
def test_concurrent_advances_from_the_same_position_exactly_one_wins(db, dsn, three, existing):
    p1, p2, p3 = three
    start = p1 if existing else 0
    if existing:
        advance(db, "projection", 0, p1)
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:   # two explicit transactions
        assert advance(a, "projection", start, p2) is True        # A holds the row (or the insert) ...
        outcome: dict = {}

        def advance_from_b():
            try:
                outcome["result"] = advance(b, "projection", start, p3)
            except BaseException as error:  # reported to the main thread
                outcome["error"] = error

        worker = threading.Thread(target=advance_from_b, daemon=True)
        worker.start()
        try:
            wait_for_lock_wait(db, b.info.backend_pid)             # ... so B waits for A's transaction
            assert worker.is_alive() and not outcome
            assert load(db, "projection") == (p1 if existing else 0)  # A has not committed yet
        finally:
            a.commit()
            worker.join(timeout=10)
        assert not worker.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"] is False                          # B lost: nothing written
        b.commit()
    assert load(db, "projection") == p2
    assert [r[:2] for r in checkpoints(db)] == [("projection", p2)]


def test_concurrent_first_advance_wins_when_the_other_rolls_back(db, dsn, three):
    p1, p2, _ = three
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        assert advance(a, "projection", 0, p1) is True
        outcome: dict = {}
        worker = threading.Thread(target=lambda: outcome.update(result=advance(b, "projection", 0, p2)),
                                  daemon=True)
        worker.start()
        try:
            wait_for_lock_wait(db, b.info.backend_pid)
        finally:
            a.rollback()
            worker.join(timeout=10)
        assert outcome == {"result": True}
        b.commit()
    assert load(db, "projection") == p2


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "rollback"])
def test_advance_and_handler_output_commit_or_roll_back_together(db, dsn, three, commit):
    p1, *_ = three
    before = store_state(db)
    with psycopg.connect(dsn) as handler:
        output = append(handler, "projection-out")
        assert advance(handler, "projection", 0, p1) is True
        assert load(handler, "projection") == p1       # the handler's transaction sees its advance
        assert load(db, "projection") == 0              # nobody else does yet
        if commit:
            handler.commit()
        else:
            handler.rollback()
    if commit:
        assert load(db, "projection") == p1
        assert db.execute("SELECT count(*) FROM finam.events WHERE position = %s", (output,)).fetchone()[0] == 1
    else:
        assert load(db, "projection") == 0
        assert checkpoints(db) == []
        assert store_state(db) == before


# -- is_readable ------------------------------------------------------------------------------


def test_is_readable_waits_for_older_open_transactions(db, dsn):
    """Deterministic: A (open, older) holds back B's committed event, as read_all does."""
    first = append(db, "early-1")
    wait_until_readable(db)
    assert db.execute(IS_READABLE, (first,)).fetchone()[0] is True

    with psycopg.connect(dsn) as a:
        a_position = append(a, "slow-1")                       # A's transaction stays open
        b_position = append(db, "fast-1")                      # B is committed ...
        assert db.execute(IS_READABLE, (b_position,)).fetchone()[0] is False   # ... but not readable yet
        assert b_position not in [r[0] for r in db.execute("SELECT position FROM finam.read_all()")]
        assert db.execute(IS_READABLE, (first,)).fetchone()[0] is True
        # A's own uncommitted event is not readable, even for A; others do not see it at all.
        assert a.execute(IS_READABLE, (a_position,)).fetchone()[0] is False
        expect_error(db, "FC003", IS_READABLE, (a_position,))
        a.commit()

    wait_until_readable(db)
    assert db.execute(IS_READABLE, (b_position,)).fetchone()[0] is True
    assert db.execute(IS_READABLE, (a_position,)).fetchone()[0] is True
    assert b_position in [r[0] for r in db.execute("SELECT position FROM finam.read_all()")]


@pytest.mark.parametrize("position", [None, 0, -1, "unknown"])
def test_is_readable_of_an_unknown_position_is_fc003(db, position):
    last = append(db, "account-1")
    position = last + 1000 if position == "unknown" else position
    err = expect_error(db, "FC003", IS_READABLE, (position,))
    assert "event_position" in message(err)


# -- privileges -------------------------------------------------------------------------------


def test_reader_may_load_and_probe_but_not_advance_or_delete(db, three):
    p1, p2, _ = three
    advance(db, "projection", 0, p1)
    before = checkpoints(db)
    with as_role(db, "finam_reader"):
        assert load(db, "projection") == p1
        assert db.execute(IS_READABLE, (p2,)).fetchone()[0] is True
        assert db.execute("SELECT name, position FROM finam.checkpoints").fetchall() == [("projection", p1)]
        assert sqlstate_of(db, ADVANCE, ("projection", p1, p2)) == "42501"
        assert sqlstate_of(db, ADVANCE, ("new", 0, p2)) == "42501"
        assert sqlstate_of(db, DELETE, ("projection",)) == "42501"
        assert sqlstate_of(db, "DELETE FROM finam.checkpoints") == "42501"
    assert checkpoints(db) == before


def test_writer_may_advance_and_delete_through_the_functions_only(db, three):
    p1, p2, _ = three
    with as_role(db, "finam_writer"):
        assert advance(db, "projection", 0, p1) is True
        assert advance(db, "projection", p1, p2) is True
        assert load(db, "projection") == p2
        assert sqlstate_of(db, "UPDATE finam.checkpoints SET position = 0, transaction_id = '0'") == "42501"
        assert db.execute(DELETE, ("projection",)).fetchone()[0] is True
    assert checkpoints(db) == []


def test_checkpoint_table_constraints_hold_for_the_owner(db, three):
    """The table refuses what the functions never write, even for a superuser."""
    for values in [("", 0, "0"), ("x" * 513, 0, "0"), ("a", -1, "0"), ("a", 0, "5"), ("a", three[0], "0")]:
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("INSERT INTO finam.checkpoints (name, position, transaction_id) VALUES (%s, %s, %s)", values)
    assert checkpoints(db) == []


# -- Python client ----------------------------------------------------------------------------


@pytest.fixture
def checkpoint_store(pool) -> PostgresCheckpointStore:
    return PostgresCheckpointStore(pool)


def test_python_checkpoint_store(store, checkpoint_store, db):
    [first] = store.append("account-1", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}))
    [second] = store.append("account-2", NewEvent(uuid.uuid4(), "Deposited", {"amount": "2"}))
    assert checkpoint_store.load("projection") == 0
    assert checkpoint_store.advance("projection", 0, first.position) is True
    assert checkpoint_store.advance("projection", 0, second.position) is False
    assert checkpoint_store.load("projection") == first.position
    assert checkpoint_store.advance("projection", first.position, second.position) is True

    with pytest.raises(InvalidArgument, match="checkpoint 'projection'"):
        checkpoint_store.advance("projection", second.position, first.position)
    with pytest.raises(InvalidArgument, match="checkpoint name"):
        checkpoint_store.load("")
    assert checkpoint_store.load("projection") == second.position

    assert checkpoint_store.delete("projection") is True
    assert checkpoint_store.delete("projection") is False
    assert checkpoint_store.load("projection") == 0


def test_python_advance_in_the_handlers_transaction(store, checkpoint_store, dsn, db):
    [event] = store.append("account-1", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}))
    derived = NewEvent(uuid.uuid5(event.id, "risk"), "RiskChecked", {"ok": True})
    with psycopg.connect(dsn) as conn:
        with pytest.raises(RuntimeError):
            with conn.transaction():
                store.append("risk-1", derived, connection=conn)
                assert checkpoint_store.advance("risk", 0, event.position, connection=conn) is True
                assert checkpoint_store.load("risk", connection=conn) == event.position
                raise RuntimeError("handler crashed before commit")
        assert checkpoint_store.load("risk") == 0
        assert store.stream_version("risk-1") == 0

        with conn.transaction():
            store.append("risk-1", derived, connection=conn)
            assert checkpoint_store.advance("risk", 0, event.position, connection=conn) is True
    assert checkpoint_store.load("risk") == event.position
    assert store.stream_version("risk-1") == 1


def test_python_is_readable(store, dsn, db):
    [event] = store.append("account-1", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}))
    wait_until_readable(db)
    assert store.is_readable(event.position) is True
    with psycopg.connect(dsn) as conn:
        [own] = store.append("account-2", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}), connection=conn)
        assert store.is_readable(own.position, connection=conn) is False
        with pytest.raises(InvalidArgument, match=str(own.position)):
            store.is_readable(own.position)            # not committed: no such event for others
        conn.rollback()
    with pytest.raises(InvalidArgument):
        store.is_readable(event.position + 1000)
