"""SQL-level tests of the read side: read_stream(_backward), read_all, read_category
(including gap safety against a transaction still in flight), snapshots and the
DBA summary views.

Plain SQL with named arguments over a real PostgreSQL connection, as psql or a
client in another language would call it.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from support import expect_error, message, store_state, wait_until_readable

APPEND_EVENT = (
    "SELECT * FROM finam.append_event(stream => %s, id => %s, type => %s, payload => %s::jsonb)"
)
SAVE_SNAPSHOT = (
    "SELECT finam.save_snapshot(stream => %s, version => %s, state => %s::jsonb, schema_version => %s)"
)


# -- helpers ----------------------------------------------------------------------------------


def append(db, stream, type_="Deposited", payload=None, event_id=None):
    """append_event; returns (id, version, position)."""
    event_id = event_id or uuid.uuid4()
    payload = {"n": "1"} if payload is None else payload
    version, position, _ = db.execute(APPEND_EVENT, (stream, event_id, type_, json.dumps(payload))).fetchone()
    return event_id, version, position










def read_all_pages(db, after_position=0, max_count=1000):
    """Pages through read_all with after_position = last row's position; returns (rows, last)."""
    seen = []
    while True:
        page = db.execute(
            "SELECT id, position FROM finam.read_all(after_position => %s, max_count => %s)",
            (after_position, max_count)).fetchall()
        if not page:
            return seen, after_position
        assert len(page) <= max_count
        seen.extend(page)
        after_position = page[-1][1]


def read_category_pages(db, category, max_count):
    seen, after = [], 0
    while True:
        page = db.execute(
            "SELECT id, stream, position FROM finam.read_category(category => %s, after_position => %s,"
            " max_count => %s)", (category, after, max_count)).fetchall()
        if not page:
            return seen
        assert len(page) <= max_count
        seen.extend(page)
        after = page[-1][2]


# -- read_stream ------------------------------------------------------------------------------


@pytest.fixture
def five(db):
    """Stream account-1 with five events (and noise in another stream); returns the ids."""
    ids = []
    for i in range(5):
        ids.append(append(db, "account-1", f"T{i}", {"i": i})[0])
        append(db, "account-2")
    return ids


def test_read_stream_defaults_return_all_in_version_order(db, five):
    rows = db.execute("SELECT id, version, type, payload FROM finam.read_stream(stream => %s)",
                      ("account-1",)).fetchall()
    assert [r[0] for r in rows] == five
    assert [r[1] for r in rows] == [1, 2, 3, 4, 5]
    assert [r[2] for r in rows] == [f"T{i}" for i in range(5)]
    assert [r[3] for r in rows] == [{"i": i} for i in range(5)]


def test_read_stream_from_version_and_max_count(db, five):
    rows = db.execute(
        "SELECT version FROM finam.read_stream(stream => %s, from_version => %s, max_count => %s)",
        ("account-1", 2, 3)).fetchall()
    assert [r[0] for r in rows] == [2, 3, 4]
    rows = db.execute("SELECT version FROM finam.read_stream(stream => %s, from_version => %s)",
                      ("account-1", 4)).fetchall()
    assert [r[0] for r in rows] == [4, 5]
    assert db.execute("SELECT count(*) FROM finam.read_stream(stream => %s, from_version => 6)",
                      ("account-1",)).fetchone()[0] == 0


def test_read_stream_of_unknown_stream_is_empty(db, five):
    assert db.execute("SELECT count(*) FROM finam.read_stream(stream => 'account-none')").fetchone()[0] == 0


def test_read_stream_returns_all_columns(db):
    event_id, version, position = append(db, "account-9", "Opened", {"owner": "alice"})
    row = db.execute(
        "SELECT id, stream, type, version, payload, metadata, position, category, created_at"
        " FROM finam.read_stream(stream => 'account-9')").fetchone()
    assert row[:8] == (event_id, "account-9", "Opened", 1, {"owner": "alice"}, {}, position, "account")
    assert row[8] is not None


def test_read_stream_backward_defaults_from_head(db, five):
    rows = db.execute("SELECT id, version FROM finam.read_stream_backward(stream => %s)",
                      ("account-1",)).fetchall()
    assert [r[1] for r in rows] == [5, 4, 3, 2, 1]
    assert [r[0] for r in rows] == list(reversed(five))


def test_read_stream_backward_from_version_and_max_count(db, five):
    rows = db.execute(
        "SELECT version FROM finam.read_stream_backward(stream => %s, from_version => %s, max_count => %s)",
        ("account-1", 4, 2)).fetchall()
    assert [r[0] for r in rows] == [4, 3]
    rows = db.execute("SELECT version FROM finam.read_stream_backward(stream => %s, max_count => 1)",
                      ("account-1",)).fetchall()
    assert [r[0] for r in rows] == [5]
    rows = db.execute("SELECT version FROM finam.read_stream_backward(stream => %s, from_version => 99)",
                      ("account-1",)).fetchall()
    assert [r[0] for r in rows] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("function", ["read_stream", "read_stream_backward"])
@pytest.mark.parametrize("args", [
    {"stream": None},
    {"stream": ""},
    {"stream": "account-1", "from_version": 0},
    {"stream": "account-1", "from_version": -1},
    {"stream": "account-1", "max_count": 0},
    {"stream": "account-1", "max_count": -5},
], ids=["null stream", "empty stream", "from 0", "from -1", "max 0", "max -5"])
def test_read_stream_invalid_arguments_are_fc003(db, five, function, args):
    params = {"stream": None, "from_version": 1, "max_count": 10} | args
    sql = (f"SELECT * FROM finam.{function}(stream => %(stream)s, from_version => %(from_version)s::bigint,"
           " max_count => %(max_count)s::integer)")
    expect_error(db, "FC003", sql, params)


# -- read_all ---------------------------------------------------------------------------------


def test_read_all_returns_everything_once_with_default_arguments(db):
    appended = [append(db, f"account-{i % 3}")[::2] for i in range(7)]  # (id, position)
    wait_until_readable(db)
    rows = db.execute("SELECT id, position FROM finam.read_all()").fetchall()
    assert sorted(rows, key=lambda r: r[1]) == sorted(appended, key=lambda r: r[1])
    assert len({r[0] for r in rows}) == 7


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 50])
def test_read_all_paging_delivers_every_event_exactly_once(db, page_size):
    appended = {append(db, f"stream{i % 2}-{i % 4}")[0] for i in range(7)}
    wait_until_readable(db)
    seen, _ = read_all_pages(db, max_count=page_size)
    ids = [r[0] for r in seen]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == appended


def test_read_all_sequential_appends_come_in_position_order(db):
    positions = [append(db, "account-1")[2] for _ in range(4)]
    wait_until_readable(db)
    rows = db.execute("SELECT position FROM finam.read_all(after_position => 0)").fetchall()
    assert [r[0] for r in rows] == positions


def test_read_all_after_last_position_is_empty_then_continues(db):
    append(db, "account-1")
    wait_until_readable(db)
    seen, last = read_all_pages(db)
    assert len(seen) == 1
    assert db.execute("SELECT count(*) FROM finam.read_all(after_position => %s)", (last,)).fetchone()[0] == 0
    new_id = append(db, "account-1")[0]
    wait_until_readable(db)
    rows = db.execute("SELECT id FROM finam.read_all(after_position => %s)", (last,)).fetchall()
    assert [r[0] for r in rows] == [new_id]


def test_read_all_on_empty_store_is_empty(db):
    assert db.execute("SELECT count(*) FROM finam.read_all()").fetchone()[0] == 0


@pytest.mark.parametrize("after_position,max_count", [(-1, 10), (None, 10), (0, 0), (0, -1), (0, None)])
def test_read_all_invalid_arguments_are_fc003(db, after_position, max_count):
    append(db, "account-1")
    expect_error(db, "FC003",
                 "SELECT * FROM finam.read_all(after_position => %s::bigint, max_count => %s::integer)",
                 (after_position, max_count))


def test_read_all_unknown_position_is_fc003(db):
    _, _, position = append(db, "account-1")
    err = expect_error(db, "FC003", "SELECT * FROM finam.read_all(after_position => %s)", (position + 1000,))
    assert str(position + 1000) in message(err)


def test_read_all_pages_through_a_batch_one_row_at_a_time(db):
    ids = [uuid.uuid4() for _ in range(5)]
    rows = db.execute(
        "SELECT id FROM finam.append_events(stream => 'orders-1', events => %s::jsonb)",
        (json.dumps([{"id": str(i), "type": "T", "payload": {}} for i in ids]),)).fetchall()
    assert [r[0] for r in rows] == ids
    wait_until_readable(db)
    seen, _ = read_all_pages(db, max_count=1)
    assert [r[0] for r in seen] == ids


def test_read_all_delivers_interleaved_transactions_exactly_once(db, dsn):
    """Positions drawn A, B, A: read_all order is per transaction, every event arrives once."""
    with psycopg.connect(dsn) as a:
        a1 = uuid.uuid4()
        a.execute(APPEND_EVENT, ("slow-1", a1, "T", "{}"))
        b1 = append(db, "fast-1")[0]
        a2 = uuid.uuid4()
        a.execute(APPEND_EVENT, ("slow-2", a2, "T", "{}"))
        a.commit()
    wait_until_readable(db)
    positions = dict(db.execute("SELECT id, position FROM finam.events").fetchall())
    assert positions[a1] < positions[b1] < positions[a2]
    for page_size in (1, 2, 10):
        seen, _ = read_all_pages(db, max_count=page_size)
        assert [r[0] for r in seen] == [a1, a2, b1], page_size


# -- gap safety -------------------------------------------------------------------------------


def test_read_all_is_gap_safe_against_an_open_transaction(db, dsn):
    # A committed event before the race, so the reader's cursor is a real position.
    first_id, _, first_position = append(db, "early-1")
    wait_until_readable(db)
    seen, cursor = read_all_pages(db)
    assert [r[0] for r in seen] == [first_id]
    assert cursor == first_position

    with psycopg.connect(dsn) as a:  # not autocommit: A's transaction stays open
        a_id = uuid.uuid4()
        a_position = a.execute(APPEND_EVENT, ("slow-1", a_id, "T", "{}")).fetchone()[1]

        b_id, _, b_position = append(db, "fast-1")  # autocommit: committed now
        assert a_position < b_position, "A drew its position first"

        # B is committed and visible to a plain SELECT ...
        assert db.execute("SELECT count(*) FROM finam.events WHERE id = %s", (b_id,)).fetchone()[0] == 1
        # ... but read_all holds it back while the older transaction A is open.
        page, cursor_while_open = read_all_pages(db, after_position=cursor)
        page_ids = [r[0] for r in page]
        assert b_id not in page_ids
        assert a_id not in page_ids
        seen.extend(page)
        cursor = cursor_while_open

        a.commit()

    wait_until_readable(db)
    page, cursor = read_all_pages(db, after_position=cursor)
    seen.extend(page)
    ids = [r[0] for r in seen]
    assert sorted(ids, key=str) == sorted([first_id, a_id, b_id], key=str)
    assert ids.count(a_id) == 1 and ids.count(b_id) == 1
    # A's transaction is older, so after the commit it comes first.
    assert ids.index(a_id) < ids.index(b_id)


def test_read_all_from_start_holds_back_later_commit_while_older_transaction_is_open(db, dsn):
    """Even from position 0, a reader cannot get B (committed) ahead of A (open, lower position)."""
    with psycopg.connect(dsn) as a:
        a_id = uuid.uuid4()
        a.execute(APPEND_EVENT, ("slow-1", a_id, "T", "{}"))
        b_id = append(db, "fast-1")[0]
        assert db.execute("SELECT count(*) FROM finam.read_all()").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM finam.read_category(category => 'fast')").fetchone()[0] == 0
        a.commit()
    wait_until_readable(db)
    rows = db.execute("SELECT id FROM finam.read_all()").fetchall()
    assert [r[0] for r in rows] == [a_id, b_id]


def test_read_all_rolled_back_transaction_leaves_no_event(db, dsn):
    with psycopg.connect(dsn) as a:
        a.execute(APPEND_EVENT, ("slow-1", uuid.uuid4(), "T", "{}"))
        b_id = append(db, "fast-1")[0]
        a.rollback()
    wait_until_readable(db)
    seen, _ = read_all_pages(db)
    assert [r[0] for r in seen] == [b_id]


def test_read_category_is_gap_safe_against_an_open_transaction(db, dsn):
    with psycopg.connect(dsn) as a:
        a_id = uuid.uuid4()
        a.execute(APPEND_EVENT, ("orders-a", a_id, "T", "{}"))
        b_id = append(db, "orders-b")[0]
        early = read_category_pages(db, "orders", 10)
        assert b_id not in [r[0] for r in early]
        a.commit()
    wait_until_readable(db)
    rows = db.execute("SELECT id FROM finam.read_category(category => 'orders')").fetchall()
    assert [r[0] for r in rows] == [a_id, b_id]


# -- read_category ----------------------------------------------------------------------------


def test_read_category_returns_only_its_streams(db):
    wanted = [append(db, s)[0] for s in ("orders-1", "orders-2", "orders-1-sub", "orders")]
    for s in ("ordersx-1", "account-1", "order-1", "x-orders"):
        append(db, s)
    wait_until_readable(db)
    rows = db.execute("SELECT id, category FROM finam.read_category(category => 'orders')").fetchall()
    assert [r[0] for r in rows] == wanted
    assert {r[1] for r in rows} == {"orders"}


@pytest.mark.parametrize("page_size", [1, 2, 5])
def test_read_category_paging_delivers_every_event_exactly_once(db, page_size):
    wanted = set()
    for i in range(6):
        wanted.add(append(db, f"orders-{i % 3}")[0])
        append(db, f"account-{i}")
    wait_until_readable(db)
    seen = read_category_pages(db, "orders", page_size)
    ids = [r[0] for r in seen]
    assert len(ids) == len(set(ids)) == 6
    assert set(ids) == wanted
    assert all(r[1].startswith("orders-") for r in seen)


def test_read_category_after_position_of_other_category_event(db):
    """The cursor may be any stored position (e.g. one read from read_all)."""
    o1 = append(db, "orders-1")[0]
    _, _, other_position = append(db, "account-1")
    o2 = append(db, "orders-2")[0]
    wait_until_readable(db)
    rows = db.execute("SELECT id FROM finam.read_category(category => 'orders', after_position => %s)",
                      (other_position,)).fetchall()
    assert [r[0] for r in rows] == [o2]
    assert o1 not in [r[0] for r in rows]


@pytest.mark.parametrize("category,after_position,max_count", [
    ("", 0, 10),
    (None, 0, 10),
    ("orders-1", 0, 10),
    ("-", 0, 10),
    ("orders", -1, 10),
    ("orders", 0, 0),
    ("orders", 0, -3),
], ids=["empty", "null", "with dash", "dash only", "negative after", "max 0", "max -3"])
def test_read_category_invalid_arguments_are_fc003(db, category, after_position, max_count):
    append(db, "orders-1")
    expect_error(db, "FC003",
                 "SELECT * FROM finam.read_category(category => %s, after_position => %s::bigint,"
                 " max_count => %s::integer)", (category, after_position, max_count))


def test_read_category_unknown_position_is_fc003(db):
    _, _, position = append(db, "orders-1")
    expect_error(db, "FC003",
                 "SELECT * FROM finam.read_category(category => 'orders', after_position => %s)",
                 (position + 1000,))


# -- snapshots --------------------------------------------------------------------------------


def save(db, stream, version, state, schema_version=1):
    return db.execute(SAVE_SNAPSHOT, (stream, version, json.dumps(state), schema_version)).fetchone()[0]


def load(db, stream, schema_version=None):
    return db.execute(
        "SELECT version, state, state_schema_version, created_at"
        " FROM finam.load_snapshot(stream => %s, schema_version => %s)", (stream, schema_version)).fetchall()


@pytest.fixture
def stream3(db):
    """Stream portfolio-1 at version 3."""
    for _ in range(3):
        append(db, "portfolio-1")
    return "portfolio-1"


def test_load_snapshot_of_stream_without_snapshot_is_empty(db, stream3):
    assert load(db, stream3) == []
    assert load(db, stream3, 1) == []


def test_save_and_load_snapshot(db, stream3):
    assert save(db, stream3, 2, {"cash": "10.00"}) is True
    rows = load(db, stream3)
    assert len(rows) == 1
    version, state, schema_version, created_at = rows[0]
    assert (version, state, schema_version) == (2, {"cash": "10.00"}, 1)
    assert created_at is not None
    assert load(db, stream3, 1)[0][:3] == (2, {"cash": "10.00"}, 1)
    assert load(db, "portfolio-2") == []


def test_save_snapshot_default_schema_version_is_one(db, stream3):
    assert db.execute("SELECT finam.save_snapshot(stream => %s, version => 3, state => '{}'::jsonb)",
                      (stream3,)).fetchone()[0] is True
    assert load(db, stream3, 1)[0][:3] == (3, {}, 1)


@pytest.mark.parametrize("version", [4, 100, 0, -1])
def test_save_snapshot_outside_stream_is_fc005(db, stream3, version):
    err = expect_error(db, "FC005", SAVE_SNAPSHOT, (stream3, version, "{}", 1))
    assert stream3 in message(err)
    assert load(db, stream3) == []


def test_save_snapshot_of_empty_stream_is_fc005(db):
    expect_error(db, "FC005", SAVE_SNAPSHOT, ("portfolio-empty", 1, "{}", 1))


def test_newer_snapshot_replaces_older(db, stream3):
    assert save(db, stream3, 1, {"v": 1}) is True
    assert save(db, stream3, 3, {"v": 3}) is True
    assert load(db, stream3)[0][:3] == (3, {"v": 3}, 1)
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 1


@pytest.mark.parametrize("older_state", [{"v": 1}, {"v": "anything"}])
def test_older_snapshot_is_ignored(db, stream3, older_state):
    assert save(db, stream3, 3, {"v": 3}) is True
    before = store_state(db)
    assert save(db, stream3, 1, older_state) is False
    assert store_state(db) == before
    assert load(db, stream3)[0][:2] == (3, {"v": 3})


def test_equal_snapshot_is_ignored(db, stream3):
    assert save(db, stream3, 2, {"v": 2}) is True
    created = load(db, stream3)[0][3]
    before = store_state(db)
    assert save(db, stream3, 2, {"v": 2}) is False
    assert store_state(db) == before
    assert load(db, stream3)[0] == (2, {"v": 2}, 1, created)


def test_same_version_different_state_is_fc005(db, stream3):
    assert save(db, stream3, 2, {"v": 2}) is True
    err = expect_error(db, "FC005", SAVE_SNAPSHOT, (stream3, 2, json.dumps({"v": "other"}), 1))
    assert stream3 in message(err)
    assert load(db, stream3)[0][:2] == (2, {"v": 2})


def test_snapshot_schema_versions_coexist(db, stream3):
    assert save(db, stream3, 2, {"layout": 1}, 1) is True
    assert save(db, stream3, 3, {"layout": 2}, 2) is True
    assert save(db, stream3, 1, {"layout": 3}, 3) is True  # older than the others, but its own layout
    assert load(db, stream3, 1)[0][:3] == (2, {"layout": 1}, 1)
    assert load(db, stream3, 2)[0][:3] == (3, {"layout": 2}, 2)
    assert load(db, stream3, 3)[0][:3] == (1, {"layout": 3}, 3)
    assert load(db, stream3, 4) == []
    # NULL schema version: the newest snapshot of any layout.
    assert load(db, stream3)[0][:3] == (3, {"layout": 2}, 2)


def test_same_version_in_other_schema_is_not_a_conflict(db, stream3):
    assert save(db, stream3, 2, {"a": 1}, 1) is True
    assert save(db, stream3, 2, {"b": 2}, 2) is True
    assert load(db, stream3, 1)[0][1] == {"a": 1}
    assert load(db, stream3, 2)[0][1] == {"b": 2}


def test_snapshots_are_per_stream(db, stream3):
    append(db, "portfolio-2")
    save(db, stream3, 3, {"s": 1})
    save(db, "portfolio-2", 1, {"s": 2})
    assert load(db, stream3)[0][:2] == (3, {"s": 1})
    assert load(db, "portfolio-2")[0][:2] == (1, {"s": 2})


@pytest.mark.parametrize("stream,version,state,schema_version", [
    ("portfolio-1", None, "{}", 1),
    ("portfolio-1", 1, "[]", 1),
    ("portfolio-1", 1, '"text"', 1),
    ("portfolio-1", 1, "7", 1),
    ("portfolio-1", 1, "null", 1),
    ("portfolio-1", 1, None, 1),
    ("portfolio-1", 1, "{}", 0),
    ("portfolio-1", 1, "{}", -1),
    ("portfolio-1", 1, "{}", None),
    ("", 1, "{}", 1),
    (None, 1, "{}", 1),
], ids=["null version", "array state", "string state", "number state", "json null state", "null state",
        "schema 0", "schema -1", "schema null", "empty stream", "null stream"])
def test_save_snapshot_invalid_arguments_are_fc003(db, stream3, stream, version, state, schema_version):
    expect_error(db, "FC003",
                 "SELECT finam.save_snapshot(stream => %s, version => %s::bigint, state => %s::jsonb,"
                 " schema_version => %s::integer)", (stream, version, state, schema_version))


@pytest.mark.parametrize("stream", [None, ""])
def test_load_snapshot_invalid_stream_is_fc003(db, stream):
    expect_error(db, "FC003", "SELECT * FROM finam.load_snapshot(stream => %s)", (stream,))


# -- views ------------------------------------------------------------------------------------


def test_streams_view(db):
    append(db, "orders-1", "Placed")
    append(db, "account-1", "Opened")
    append(db, "orders-1", "Filled")
    _, _, last_position = append(db, "orders-1", "Settled")
    _, _, acc_position = append(db, "account-1", "Deposited")
    append(db, "solo", "Created")
    rows = db.execute(
        "SELECT stream, category, version, last_position, last_type, last_event_at"
        " FROM finam.streams ORDER BY stream").fetchall()
    assert [r[:5] for r in rows] == [
        ("account-1", "account", 2, acc_position, "Deposited"),
        ("orders-1", "orders", 3, last_position, "Settled"),
        ("solo", "solo", 1, rows[2][3], "Created"),
    ]
    for stream, *_, last_event_at in rows:
        expected = db.execute("SELECT created_at FROM finam.events WHERE stream = %s ORDER BY version DESC LIMIT 1",
                              (stream,)).fetchone()[0]
        assert last_event_at == expected
    solo_position = db.execute("SELECT position FROM finam.events WHERE stream = 'solo'").fetchone()[0]
    assert rows[2][3] == solo_position


def test_streams_view_is_empty_without_events(db):
    assert db.execute("SELECT count(*) FROM finam.streams").fetchone()[0] == 0


def test_category_summary(db):
    for stream in ("orders-1", "orders-1", "orders-2", "orders", "account-1", "account-1", "account-1"):
        append(db, stream)
    rows = db.execute("SELECT category, stream_count, event_count, last_event_at"
                      " FROM finam.category_summary ORDER BY category").fetchall()
    assert [r[:3] for r in rows] == [("account", 1, 3), ("orders", 3, 4)]
    for category, _, _, last_event_at in rows:
        expected = db.execute("SELECT max(created_at) FROM finam.events WHERE category = %s",
                              (category,)).fetchone()[0]
        assert last_event_at == expected


def test_type_summary(db):
    append(db, "orders-1", "Placed")
    append(db, "orders-2", "Placed")
    append(db, "orders-2", "Placed")
    append(db, "orders-1", "Filled")
    append(db, "account-1", "Deposited")
    rows = db.execute("SELECT type, stream_count, event_count, last_event_at"
                      " FROM finam.type_summary ORDER BY type").fetchall()
    assert [r[:3] for r in rows] == [("Deposited", 1, 1), ("Filled", 1, 1), ("Placed", 2, 3)]
    assert all(r[3] is not None for r in rows)


def test_summaries_are_empty_without_events(db):
    assert db.execute("SELECT count(*) FROM finam.category_summary").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM finam.type_summary").fetchone()[0] == 0
