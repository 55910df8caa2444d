"""The Python client (PostgresEventStore / PostgresSnapshotStore) against a real PostgreSQL.

Every rule lives in the SQL functions; these tests check that the client calls
them correctly, maps each FC SQLSTATE to its exception, encodes payloads
(Decimal as JSON strings, never float) and decodes them (fractions as Decimal).
Row counts are always checked through the independent ``db`` connection.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
import psycopg_pool
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finam_thin.errors import (
    EventIdConflict,
    FinamError,
    HistoryIsImmutable,
    InvalidArgument,
    SnapshotConflict,
    WrongExpectedVersion,
    translated_errors,
)
from finam_thin.persistence import (AppendResult, NewEvent, Snapshot, StoredEvent, _flat_json, _json_default,
                                    encode_json_object, text_problem)
from support import wait_until_readable


# -- helpers ---------------------------------------------------------------


def new_event(n: int = 0, type: str = "Deposited", **payload) -> NewEvent:
    return NewEvent(uuid4(), type, payload or {"n": n, "amount": Decimal("100.50")})


def count_events(db, stream: str | None = None) -> int:
    if stream is None:
        return db.execute("SELECT count(*) FROM finam.events").fetchone()[0]
    return db.execute("SELECT count(*) FROM finam.events WHERE stream = %s", (stream,)).fetchone()[0]




def assert_sqlstate(excinfo, sqlstate: str) -> None:
    """The exception carries the documented code, and so does the database error behind it."""
    assert excinfo.value.sqlstate == sqlstate
    cause = excinfo.value.__cause__
    assert isinstance(cause, psycopg.Error)
    assert cause.sqlstate == sqlstate


# -- append: one event, a batch ---------------------------------------------


def test_append_one_event_returns_its_version_and_position(store, db):
    event = NewEvent(uuid4(), "Deposited", {"amount": "10"}, {"correlation_id": "c-1"})

    results = store.append("portfolio-1", event)

    assert len(results) == 1
    result = results[0]
    assert isinstance(result, AppendResult)
    assert result.id == event.id
    assert result.version == 1
    assert result.duplicate is False
    row = db.execute("SELECT id, stream, type, version, position, payload, metadata FROM finam.events").fetchall()
    assert row == [(event.id, "portfolio-1", "Deposited", 1, result.position,
                    {"amount": "10"}, {"correlation_id": "c-1"})]


def test_append_batch_uses_append_batch_and_numbers_events_in_order(store, db):
    store.append("portfolio-1", new_event(0))
    batch = [new_event(i) for i in range(1, 6)]

    results = store.append("portfolio-1", batch, expected_version=1)

    assert [r.id for r in results] == [e.id for e in batch]
    assert [r.version for r in results] == [2, 3, 4, 5, 6]
    assert all(r.duplicate is False for r in results)
    positions = [r.position for r in results]
    assert positions == sorted(positions) and len(set(positions)) == 5
    stored = db.execute("SELECT id, version, position FROM finam.events WHERE version > 1 ORDER BY version").fetchall()
    assert stored == [(r.id, r.version, r.position) for r in results]
    # The whole batch is one transaction, so one transaction id.
    assert db.execute("SELECT count(DISTINCT transaction_id) FROM finam.events WHERE version > 1").fetchone()[0] == 1


def test_batch_path_calls_finam_append_batch(store, db):
    """A batch of two or more goes through finam.append_batch: only it numbers events ("event #2") and
    rejects a repeated id in one call."""
    bad = NewEvent(uuid4(), "", {"a": 1})
    with pytest.raises(InvalidArgument, match=r"event #2 "):
        store.append("portfolio-1", [new_event(1), bad])
    with pytest.raises(InvalidArgument, match=r"event [0-9a-f-]{36} for stream"):
        store.append("portfolio-1", bad)  # a single event goes through finam.append_event
    assert count_events(db) == 0


def test_expected_version_zero_creates_a_stream_and_n_continues_it(store, db):
    assert store.stream_version("portfolio-1") == 0
    assert store.append("portfolio-1", new_event(1), expected_version=0)[0].version == 1
    assert store.append("portfolio-1", new_event(2), expected_version=1)[0].version == 2
    assert [r.version for r in store.append("portfolio-1", [new_event(3), new_event(4)], expected_version=2)] == [3, 4]
    assert store.append("portfolio-1", new_event(5))[0].version == 5  # None = no check
    assert store.stream_version("portfolio-1") == 5
    assert count_events(db, "portfolio-1") == 5


def test_streams_are_numbered_independently(store):
    assert store.append("portfolio-1", new_event(1))[0].version == 1
    assert store.append("portfolio-2", new_event(1))[0].version == 1
    assert store.append("portfolio-1", new_event(2))[0].version == 2


def test_wrong_expected_version_single_event(store, db):
    store.append("portfolio-1", [new_event(1), new_event(2)])

    with pytest.raises(WrongExpectedVersion) as excinfo:
        store.append("portfolio-1", new_event(3), expected_version=1)

    error = excinfo.value
    assert error.stream == "portfolio-1"
    assert error.expected == 1
    assert error.actual == 2
    assert_sqlstate(excinfo, "FC001")
    assert "portfolio-1" in str(error)
    assert count_events(db) == 2


def test_wrong_expected_version_batch(store, db):
    store.append("portfolio-1", new_event(1))

    with pytest.raises(WrongExpectedVersion) as excinfo:
        store.append("portfolio-1", [new_event(2), new_event(3)], expected_version=0)

    assert (excinfo.value.stream, excinfo.value.expected, excinfo.value.actual) == ("portfolio-1", 0, 1)
    assert_sqlstate(excinfo, "FC001")
    assert count_events(db) == 1


def test_expected_version_ahead_of_the_stream_is_wrong(store, db):
    with pytest.raises(WrongExpectedVersion) as excinfo:
        store.append("portfolio-new", new_event(1), expected_version=3)
    assert (excinfo.value.expected, excinfo.value.actual) == (3, 0)
    assert count_events(db) == 0


def test_same_id_with_different_payload_is_event_id_conflict(store, db):
    event = new_event(1)
    store.append("portfolio-1", event)

    with pytest.raises(EventIdConflict) as excinfo:
        store.append("portfolio-1", NewEvent(event.id, event.type, {"n": 999}))
    assert_sqlstate(excinfo, "FC002")

    with pytest.raises(EventIdConflict):
        store.append("portfolio-1", NewEvent(event.id, "Withdrawn", event.payload))
    with pytest.raises(EventIdConflict):
        store.append("portfolio-2", event)  # same content, other stream
    assert count_events(db) == 1


def test_batch_with_a_conflicting_or_overlapping_id_writes_nothing(store, db):
    stored = new_event(1)
    store.append("portfolio-1", stored)

    with pytest.raises(EventIdConflict) as excinfo:
        store.append("portfolio-1", [new_event(2), NewEvent(stored.id, stored.type, {"other": 1})])
    assert_sqlstate(excinfo, "FC002")
    # Same content, but only part of the batch is stored: a partial overlap, not a retry.
    with pytest.raises(EventIdConflict):
        store.append("portfolio-1", [stored, new_event(3)])
    assert count_events(db) == 1


# -- invalid arguments: FC003 / InvalidArgument, nothing written ------------


class NotJson:
    pass


@pytest.mark.parametrize(
    "stream, events",
    [
        pytest.param("", lambda: new_event(1), id="empty-stream"),
        pytest.param(None, lambda: new_event(1), id="null-stream"),
        pytest.param("x" * 513, lambda: new_event(1), id="stream-too-long"),
        pytest.param("", lambda: [new_event(1), new_event(2)], id="empty-stream-batch"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", [1, 2]), id="payload-list"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", "{}"), id="payload-str"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", None), id="payload-none"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"a": 1}, ["m"]), id="metadata-list"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": Decimal("NaN")}), id="decimal-nan"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": Decimal("sNaN")}), id="decimal-snan"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": Decimal("Infinity")}), id="decimal-inf"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": Decimal("-Infinity")}), id="decimal-neg-inf"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": float("nan")}), id="float-nan"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"px": float("inf")}), id="float-inf"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"deep": {"px": [float("-inf")]}}), id="nested-float-inf"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"x": NotJson()}), id="object"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"x": {1, 2}}), id="set"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"x": b"bytes"}), id="bytes"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "T", {"a": 1}, {"m": NotJson()}), id="metadata-object"),
        pytest.param("s-1", lambda: NewEvent(uuid4(), "", {"a": 1}), id="empty-type"),
        pytest.param("s-1", lambda: [], id="empty-batch"),
        pytest.param("s-1", lambda: (), id="empty-tuple"),
        pytest.param("s-1", lambda: [new_event(1), {"id": str(uuid4())}], id="dict-item"),
        pytest.param("s-1", lambda: [new_event(1), None], id="none-item"),
        pytest.param("s-1", lambda: [new_event(1), new_event(2, type="")], id="batch-empty-type"),
        pytest.param("s-1", lambda: [new_event(1), NewEvent(uuid4(), "T", [])], id="batch-payload-list"),
        pytest.param("s-1", lambda: [new_event(1), NewEvent(uuid4(), "T", {"px": Decimal("NaN")})], id="batch-nan"),
    ],
)
def test_invalid_arguments_raise_invalid_argument_and_write_nothing(store, db, stream, events):
    store.append("s-1", new_event(0))  # a stream with one event, to see that nothing is added

    with pytest.raises(InvalidArgument) as excinfo:
        store.append(stream, events())

    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, FinamError)
    assert excinfo.value.sqlstate == "FC003"
    if excinfo.value.__cause__ is not None and isinstance(excinfo.value.__cause__, psycopg.Error):
        assert excinfo.value.__cause__.sqlstate == "FC003"
    assert count_events(db) == 1


def test_a_batch_repeating_an_id_is_invalid(store, db):
    event = new_event(1)
    with pytest.raises(InvalidArgument) as excinfo:
        store.append("s-1", [event, event])
    assert_sqlstate(excinfo, "FC003")
    assert count_events(db) == 0


def test_negative_expected_version_is_invalid(store, db):
    with pytest.raises(InvalidArgument) as excinfo:
        store.append("s-1", new_event(1), expected_version=-1)
    assert_sqlstate(excinfo, "FC003")
    with pytest.raises(InvalidArgument):
        store.append("s-1", [new_event(1), new_event(2)], expected_version=-1)
    assert count_events(db) == 0


def test_invalid_argument_is_raised_for_bad_reads(store):
    with pytest.raises(InvalidArgument):
        store.read_stream("")
    with pytest.raises(InvalidArgument):
        store.read_stream("s-1", from_version=0)
    with pytest.raises(InvalidArgument):
        store.read_stream("s-1", max_count=0)
    with pytest.raises(InvalidArgument):
        store.read_all(after_position=-1)
    with pytest.raises(InvalidArgument):
        store.read_all(after_position=12345)  # no event has this position
    with pytest.raises(InvalidArgument):
        store.read_category("a-b")


# -- idempotent retries ------------------------------------------------------


def test_retry_of_one_event_is_a_duplicate_with_the_original_place(store, db):
    event = new_event(1)
    first = store.append("portfolio-1", event, expected_version=0)[0]
    store.append("portfolio-1", new_event(2))

    # Even with the (now stale) expected version of the first try.
    again = store.append("portfolio-1", event, expected_version=0)[0]
    assert again == AppendResult(event.id, first.version, first.position, True)
    assert store.append("portfolio-1", event)[0] == again
    # Metadata is not part of the idempotency key.
    assert store.append("portfolio-1", NewEvent(event.id, event.type, event.payload, {"retry": 1}))[0] == again
    assert count_events(db) == 2


def test_retry_of_a_whole_batch_is_a_duplicate_with_the_original_places(store, db):
    batch = [new_event(i) for i in range(4)]
    first = store.append("portfolio-1", batch, expected_version=0)
    store.append("portfolio-1", new_event(99))

    again = store.append("portfolio-1", batch, expected_version=0)

    assert [r.duplicate for r in again] == [True] * 4
    assert [(r.id, r.version, r.position) for r in again] == [(r.id, r.version, r.position) for r in first]
    assert store.append("portfolio-1", batch) == again
    assert count_events(db) == 5


def test_decimal_payload_retry_is_recognised_as_the_same_content(store, db):
    event = NewEvent(uuid4(), "Filled", {"px": Decimal("101.2500"), "qty": Decimal("3")})
    first = store.append("orders-1", event)[0]
    assert store.append("orders-1", event)[0] == AppendResult(event.id, first.version, first.position, True)
    assert count_events(db) == 1


# -- Decimal, never float ----------------------------------------------------


def test_decimal_is_stored_as_a_json_string(store, db):
    store.append("orders-1", NewEvent(uuid4(), "Filled", {"px": Decimal("101.2500"), "qty": Decimal("-3"),
                                                          "fee": Decimal("1E-8")},
                                      {"cost": Decimal("0.10")}))

    row = db.execute(
        "SELECT payload->>'px', jsonb_typeof(payload->'px'), payload->>'qty', jsonb_typeof(payload->'qty'), "
        "payload->>'fee', metadata->>'cost', jsonb_typeof(metadata->'cost') FROM finam.events"
    ).fetchone()
    assert row == ("101.2500", "string", "-3", "string", "1E-8", "0.10", "string")

    stored = store.read_stream("orders-1")[0]
    assert stored.payload == {"px": "101.2500", "qty": "-3", "fee": "1E-8"}
    assert Decimal(stored.payload["px"]) == Decimal("101.25")


def test_json_numbers_with_a_fraction_from_another_client_read_back_as_decimal(store, db):
    db.execute("SELECT * FROM finam.append_event('orders-1', %s, 'Filled', "
               "'{\"px\": 101.25, \"qty\": 3, \"nested\": {\"fee\": 0.1, \"list\": [1.5, 2]}, "
               "\"big\": 123456789012345678901234567890, \"tiny\": 1E-8, \"huge\": 2.5e30, "
               "\"name\": \"Société Générale\"}'::jsonb)",
               (uuid4(),))
    wait_until_readable(db)

    for event in (store.read_stream("orders-1")[0], store.read_all()[0], store.read_category("orders")[0],
                  store.read_stream_backward("orders-1")[0], next(store.iter_stream("orders-1"))):
        px = event.payload["px"]
        assert type(px) is Decimal and px == Decimal("101.25")
        assert type(event.payload["qty"]) is int and event.payload["qty"] == 3
        fee = event.payload["nested"]["fee"]
        assert type(fee) is Decimal and fee == Decimal("0.1")  # exactly 0.1, not 0.1000000000000000055...
        assert event.payload["nested"]["list"] == [Decimal("1.5"), 2]
        assert type(event.payload["nested"]["list"][0]) is Decimal
        assert event.payload["big"] == 123456789012345678901234567890  # beyond 64 bits: still an exact int
        assert type(event.payload["tiny"]) is Decimal and event.payload["tiny"] == Decimal("1E-8")
        assert event.payload["huge"] == Decimal("2.5E+30")  # jsonb writes it as an integer: an exact int
        assert event.payload["name"] == "Société Générale"


# -- canonical JSON: the msgspec fast path writes the stdlib encoder's text ----


def stdlib_canonical(payload) -> str:
    """The canonical text as the stores first wrote it: the stdlib's json.dumps with these options."""
    return json.dumps(payload, default=_json_default, allow_nan=False, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


PLAIN_JSON_VALUES = st.one_of(st.text(), st.booleans(), st.none(), st.integers(-(2 ** 63), 2 ** 63 - 1))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), PLAIN_JSON_VALUES, max_size=12))
def test_flat_payloads_encode_to_the_same_text_as_the_stdlib_encoder(payload):
    if any(text_problem(text) for text in [*payload, *(v for v in payload.values() if isinstance(v, str))]):
        with pytest.raises(InvalidArgument):
            encode_json_object(payload, "payload")
        return
    assert _flat_json(payload) is not None
    assert encode_json_object(payload, "payload") == stdlib_canonical(payload)


def test_every_code_point_and_escape_encodes_like_the_stdlib_encoder():
    every = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    payload = {every: every, "\t\n\"\\": "\x01\x1f\x7f\u2028", "é": -(2 ** 63), "a": 2 ** 63 - 1, "b": None}
    assert _flat_json(payload) == stdlib_canonical(payload)


@pytest.mark.parametrize("payload", [
    {"big": 2 ** 63}, {"small": -(2 ** 63) - 1}, {"px": Decimal("1.50")}, {"f": 0.1}, {"nested": {"b": 1, "a": 2}},
    {"list": [1, "x"]}, {1: "int key"}, {"at": datetime(2026, 1, 2, 3, 4, 5)}, {"id": UUID(int=7)},
    {"sub": type("Text", (str,), {})("x")}, {"flag": type("Flag", (int,), {})(1)},
], ids=repr)
def test_other_values_take_the_general_path_with_the_same_text(payload):
    assert _flat_json(payload) is None
    assert encode_json_object(payload, "payload") == stdlib_canonical(payload)


@pytest.mark.parametrize("payload, message", [
    ({"n": "\udc80"}, "payload is not valid Unicode: lone surrogate '\\udc80'"),
    ({"\ud800": "key"}, "payload is not valid Unicode: lone surrogate '\\ud800'"),
    ({"note": "a\x00b"}, "payload contains a NUL character"),
    ({"note\x00": 1}, "payload contains a NUL character"),
    ({"f": float("nan")}, "payload is not valid JSON: Out of range float values are not JSON compliant"),
])
def test_flat_payloads_postgresql_cannot_store_are_refused_with_the_same_messages(payload, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        encode_json_object(payload, "payload")


def test_argument_names_are_spelled_out_only_for_an_error():
    calls = []

    def name():
        calls.append(1)
        return "payload of event 7"

    assert encode_json_object({"a": "b"}, name) == '{"a":"b"}' and calls == []
    with pytest.raises(InvalidArgument, match="^invalid argument: payload of event 7 must be a mapping"):
        encode_json_object(["a"], name)
    assert calls == [1]


# -- reads -------------------------------------------------------------------


def test_read_stream_returns_stored_events_with_all_fields(store):
    events = [NewEvent(uuid4(), f"Type{i}", {"i": i, "amount": Decimal("1.5")},
                       {"correlation_id": f"corr-{i}", "causation": {"n": i}}) for i in range(3)]
    results = store.append("portfolio-42", events)

    stored = store.read_stream("portfolio-42")

    assert len(stored) == 3
    for event, result, row in zip(events, results, stored):
        assert isinstance(row, StoredEvent)
        assert isinstance(row.id, UUID) and row.id == event.id
        assert row.stream == "portfolio-42"
        assert row.type == event.type
        assert row.version == result.version
        assert row.position == result.position
        assert row.payload == {"i": event.payload["i"], "amount": "1.5"}
        assert row.metadata == event.metadata
        assert row.category == "portfolio"
        assert isinstance(row.created_at, datetime) and row.created_at.tzinfo is not None
    assert [e.version for e in store.read_stream("portfolio-42", from_version=2)] == [2, 3]
    assert [e.version for e in store.read_stream("portfolio-42", from_version=2, max_count=1)] == [2]
    assert store.read_stream("portfolio-42", from_version=4) == []
    assert store.read_stream("nothing-here") == []


def test_metadata_defaults_to_an_empty_object(store):
    store.append("s-1", NewEvent(uuid4(), "T", {"a": 1}))
    store.append("s-1", [NewEvent(uuid4(), "T", {"a": 2}), NewEvent(uuid4(), "T", {"a": 3})])
    assert [e.metadata for e in store.read_stream("s-1")] == [{}, {}, {}]


def test_read_stream_backward(store):
    store.append("s-1", [new_event(i) for i in range(5)])
    store.append("s-2", new_event(0))

    assert [e.version for e in store.read_stream_backward("s-1")] == [5, 4, 3, 2, 1]
    assert [e.version for e in store.read_stream_backward("s-1", from_version=3)] == [3, 2, 1]
    assert [e.version for e in store.read_stream_backward("s-1", max_count=2)] == [5, 4]
    assert [e.version for e in store.read_stream_backward("s-1", from_version=10, max_count=2)] == [5, 4]
    assert all(e.stream == "s-1" for e in store.read_stream_backward("s-1"))
    assert store.read_stream_backward("none") == []


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("total", [25, 30, 1])
def test_iter_stream_pages_through_more_than_a_page(store, total, read_ahead):
    events = [new_event(i) for i in range(total)]
    for start in range(0, total, 7):
        store.append("s-1", events[start:start + 7] if total > 1 else events[0])
    store.append("s-2", new_event(0))

    iterated = list(store.iter_stream("s-1", page_size=10, read_ahead=read_ahead))

    assert [e.version for e in iterated] == list(range(1, total + 1))
    assert [e.id for e in iterated] == [e.id for e in events]
    assert iterated == store.read_stream("s-1", max_count=100)
    assert [e.version for e in store.iter_stream("s-1", from_version=5, page_size=3, read_ahead=read_ahead)] == \
        list(range(5, total + 1))


def test_read_stream_json_returns_the_rows_with_the_stored_json_text(store, db):
    events = [NewEvent(uuid4(), f"Type{i}", {"i": i, "amount": Decimal("1.5"), "note": "café ✓"},
                       {"correlation_id": f"corr-{i}"} if i else {}) for i in range(3)]
    store.append("portfolio-42", events)
    store.append("portfolio-43", new_event(0))

    rows = store.read_stream_json("portfolio-42")

    texts = db.execute("SELECT payload::text, metadata::text FROM finam.events WHERE stream = 'portfolio-42' "
                       "ORDER BY version").fetchall()
    stored = store.read_stream("portfolio-42")
    assert [type(row) for row in rows] == [tuple] * 3
    for row, text, full in zip(rows, texts, stored):
        event_id, type_name, version, payload, metadata = row
        assert (event_id, type_name, version) == (full.id, full.type, full.version)
        assert (payload, metadata) == text  # PostgreSQL's own text of the jsonb, as str
        assert (json.loads(payload), json.loads(metadata)) == (full.payload, full.metadata)
    assert [row[2] for row in store.read_stream_json("portfolio-42", from_version=2, max_count=1)] == [2]
    assert store.read_stream_json("portfolio-42", from_version=4) == []
    assert store.read_stream("portfolio-42") == stored  # the plain read on the same pool still decodes JSON
    with pytest.raises(InvalidArgument):
        store.read_stream_json("")
    with pytest.raises(InvalidArgument):
        store.read_stream_json("s-1", from_version=0)
    with pytest.raises(InvalidArgument):
        store.read_stream_json("s-1", max_count=2 ** 40)


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("total", [25, 30, 1])
def test_iter_stream_json_pages_like_iter_stream(store, total, read_ahead):
    store.append("s-1", [new_event(i) for i in range(total)])
    store.append("s-2", new_event(0))

    rows = list(store.iter_stream_json("s-1", page_size=10, read_ahead=read_ahead))

    assert [row[:3] for row in rows] == [(e.id, e.type, e.version) for e in store.read_stream("s-1", max_count=100)]
    assert [row[2] for row in store.iter_stream_json("s-1", from_version=5, page_size=3, read_ahead=read_ahead)] \
        == list(range(5, total + 1))
    assert list(store.iter_stream_json("nothing", page_size=2, read_ahead=read_ahead)) == []


@pytest.mark.parametrize("read_ahead", [False, True])
def test_iter_stream_of_an_empty_stream(store, read_ahead):
    assert list(store.iter_stream("nothing", page_size=2, read_ahead=read_ahead)) == []


def test_iter_stream_read_ahead_sees_events_appended_while_it_runs_and_stops_cleanly(store):
    store.append("s-1", [new_event(i) for i in range(6)])
    iterator = store.iter_stream("s-1", page_size=2, read_ahead=True)
    assert [next(iterator).version for _ in range(3)] == [1, 2, 3]  # page 3-4 is being read ahead
    store.append("s-1", new_event(6))
    assert [e.version for e in iterator] == [4, 5, 6, 7]  # the next pages are read after the append

    early = store.iter_stream("s-1", page_size=2, read_ahead=True)
    assert next(early).version == 1
    early.close()  # waits for the page in flight: no helper thread is left behind
    assert not [t for t in threading.enumerate() if t.name.startswith("finam-read-ahead")]


def test_iter_stream_read_ahead_raises_the_error_of_a_page_it_read_ahead(store, db):
    store.append("s-1", [new_event(i) for i in range(4)])
    iterator = store.iter_stream("s-1", page_size=2, read_ahead=True)
    assert next(iterator).version == 1
    store.pool.close()  # the read of the next page (in flight or not yet started) fails
    with pytest.raises(psycopg_pool.PoolClosed):
        list(iterator)


def test_read_all_pages_by_position_cursor(store, db):
    appended = []
    appended += store.append("a-1", [new_event(i) for i in range(3)])
    appended += store.append("b-1", new_event(0))
    appended += store.append("a-2", [new_event(i) for i in range(2)])
    wait_until_readable(db)

    everything = store.read_all()
    assert [e.id for e in everything] == [r.id for r in appended]
    assert [(e.stream, e.version) for e in everything] == [("a-1", 1), ("a-1", 2), ("a-1", 3), ("b-1", 1),
                                                           ("a-2", 1), ("a-2", 2)]
    assert [e.category for e in everything] == ["a", "a", "a", "b", "a", "a"]

    paged, after = [], 0
    while page := store.read_all(after_position=after, max_count=4):
        paged += page
        after = page[-1].position
    assert paged == everything
    assert store.read_all(after_position=everything[-1].position) == []


def test_read_category(store, db):
    store.append("portfolio-1", new_event(1))
    store.append("orders-1", new_event(1))
    store.append("portfolio-2", [new_event(1), new_event(2)])
    store.append("portfolio", new_event(3))  # a stream name without "-" is its own category
    store.append("portfolios-1", new_event(1))  # a prefix is not the same category
    wait_until_readable(db)

    events = store.read_category("portfolio")

    assert [(e.stream, e.version) for e in events] == [("portfolio-1", 1), ("portfolio-2", 1), ("portfolio-2", 2),
                                                       ("portfolio", 1)]
    assert all(e.category == "portfolio" for e in events)
    assert [e.stream for e in store.read_category("orders")] == ["orders-1"]
    second_page = store.read_category("portfolio", after_position=events[1].position, max_count=2)
    assert [e.id for e in second_page] == [e.id for e in events[2:4]]
    assert store.read_category("nothing") == []


# -- connection=: the caller's transaction -----------------------------------


def test_append_in_a_callers_transaction_is_invisible_until_commit(store, pool, db):
    event = new_event(1)
    with pool.connection() as conn:
        with conn.transaction():
            result = store.append("portfolio-1", event, expected_version=0, connection=conn)[0]
            assert result.version == 1
            # Visible inside the transaction...
            assert [e.id for e in store.read_stream("portfolio-1", connection=conn)] == [event.id]
            assert store.stream_version("portfolio-1", connection=conn) == 1
            # ...but not to other sessions.
            assert count_events(db) == 0
            assert store.read_stream("portfolio-1") == []
            assert store.stream_version("portfolio-1") == 0
            assert store.read_all() == []
        assert count_events(db) == 1
    assert [e.id for e in store.read_stream("portfolio-1")] == [event.id]
    wait_until_readable(db)
    assert [e.id for e in store.read_all()] == [event.id]


def test_append_in_a_callers_transaction_rolls_back_when_it_raises(store, pool, db):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with pool.connection() as conn:
            with conn.transaction():
                store.append("portfolio-1", new_event(1), connection=conn)
                store.append("portfolio-1", [new_event(2), new_event(3)], expected_version=1, connection=conn)
                assert store.stream_version("portfolio-1", connection=conn) == 3
                raise Boom()
    assert count_events(db) == 0
    assert store.stream_version("portfolio-1") == 0
    # The stream is free again (the advisory lock went with the transaction).
    assert store.append("portfolio-1", new_event(4), expected_version=0)[0].version == 1


def test_finam_error_in_a_callers_transaction_is_translated_and_rolls_back(store, pool, db):
    with pytest.raises(WrongExpectedVersion):
        with pool.connection() as conn:
            with conn.transaction():
                store.append("portfolio-1", new_event(1), connection=conn)
                store.append("portfolio-1", new_event(2), expected_version=0, connection=conn)
    assert count_events(db) == 0


def test_two_streams_in_one_callers_transaction_commit_together(store, pool, db):
    with pool.connection() as conn:
        with conn.transaction():
            store.append("order-1", new_event(1), connection=conn)
            store.append("portfolio-1", new_event(1), connection=conn)
            assert count_events(db) == 0
    assert count_events(db) == 2
    assert db.execute("SELECT count(DISTINCT transaction_id) FROM finam.events").fetchone()[0] == 1


# -- snapshots ---------------------------------------------------------------


def test_snapshot_save_and_load_round_trip(store, snapshot_store):
    store.append("portfolio-1", [new_event(i) for i in range(3)])
    snapshot = Snapshot("portfolio-1", 2, {"cash": Decimal("10.50"), "positions": {"AAPL": "3"}}, 1)

    assert snapshot_store.save(snapshot) is True
    loaded = snapshot_store.load("portfolio-1")

    assert isinstance(loaded, Snapshot)
    assert loaded.stream == "portfolio-1"
    assert loaded.version == 2
    assert loaded.state == {"cash": "10.50", "positions": {"AAPL": "3"}}  # Decimal travels as a string
    assert loaded.schema_version == 1
    assert isinstance(loaded.created_at, datetime)

    assert snapshot_store.save(Snapshot("portfolio-1", 3, {"cash": "11"}, 1)) is True
    assert (snapshot_store.load("portfolio-1").version, snapshot_store.load("portfolio-1").state) == (3, {"cash": "11"})


def test_snapshot_state_numbers_with_a_fraction_load_as_decimal(store, snapshot_store, db):
    store.append("portfolio-1", new_event(1))
    db.execute("SELECT finam.save_snapshot('portfolio-1', 1, '{\"cash\": 10.25}'::jsonb, 1)")
    state = snapshot_store.load("portfolio-1").state
    assert type(state["cash"]) is Decimal and state["cash"] == Decimal("10.25")


def test_snapshot_older_or_equal_is_not_stored(store, snapshot_store):
    store.append("portfolio-1", [new_event(i) for i in range(3)])
    assert snapshot_store.save(Snapshot("portfolio-1", 2, {"v": 2}, 1)) is True

    assert snapshot_store.save(Snapshot("portfolio-1", 1, {"v": 1}, 1)) is False
    assert snapshot_store.save(Snapshot("portfolio-1", 2, {"v": 2}, 1)) is False  # same again: a no-op
    loaded = snapshot_store.load("portfolio-1")
    assert (loaded.version, loaded.state) == (2, {"v": 2})


def test_snapshot_beyond_the_head_or_below_one_is_a_conflict(store, snapshot_store, db):
    store.append("portfolio-1", [new_event(i) for i in range(3)])

    with pytest.raises(SnapshotConflict) as excinfo:
        snapshot_store.save(Snapshot("portfolio-1", 4, {"v": 4}, 1))
    assert_sqlstate(excinfo, "FC005")
    with pytest.raises(SnapshotConflict):
        snapshot_store.save(Snapshot("portfolio-1", 0, {"v": 0}, 1))
    with pytest.raises(SnapshotConflict):
        snapshot_store.save(Snapshot("empty-stream", 1, {"v": 1}, 1))
    assert snapshot_store.load("portfolio-1") is None
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 0


def test_snapshot_same_version_with_other_state_is_a_conflict(store, snapshot_store):
    store.append("portfolio-1", [new_event(i) for i in range(3)])
    snapshot_store.save(Snapshot("portfolio-1", 2, {"v": 2}, 1))

    with pytest.raises(SnapshotConflict) as excinfo:
        snapshot_store.save(Snapshot("portfolio-1", 2, {"v": "different"}, 1))
    assert_sqlstate(excinfo, "FC005")
    assert snapshot_store.load("portfolio-1").state == {"v": 2}


def test_snapshot_load_returns_none_without_a_snapshot(store, snapshot_store):
    assert snapshot_store.load("nothing-1") is None
    store.append("portfolio-1", new_event(1))
    assert snapshot_store.load("portfolio-1") is None
    assert snapshot_store.load("portfolio-1", schema_version=1) is None


def test_snapshot_schema_version_filter(store, snapshot_store):
    store.append("portfolio-1", [new_event(i) for i in range(3)])
    assert snapshot_store.save(Snapshot("portfolio-1", 3, {"layout": 1}, 1)) is True
    assert snapshot_store.save(Snapshot("portfolio-1", 2, {"layout": 2}, 2)) is True  # other layout: its own slot

    v1 = snapshot_store.load("portfolio-1", schema_version=1)
    v2 = snapshot_store.load("portfolio-1", schema_version=2)
    newest = snapshot_store.load("portfolio-1")

    assert (v1.version, v1.state, v1.schema_version) == (3, {"layout": 1}, 1)
    assert (v2.version, v2.state, v2.schema_version) == (2, {"layout": 2}, 2)
    assert (newest.version, newest.schema_version) == (3, 1)
    assert snapshot_store.load("portfolio-1", schema_version=3) is None


def test_snapshot_invalid_arguments(store, snapshot_store, db):
    store.append("portfolio-1", new_event(1))
    with pytest.raises(InvalidArgument):
        snapshot_store.save(Snapshot("portfolio-1", 1, ["not", "a", "mapping"], 1))
    with pytest.raises(InvalidArgument):
        snapshot_store.save(Snapshot("portfolio-1", 1, {"cash": Decimal("NaN")}, 1))
    with pytest.raises(InvalidArgument) as excinfo:
        snapshot_store.save(Snapshot("portfolio-1", 1, {"v": 1}, 0))
    assert_sqlstate(excinfo, "FC003")
    with pytest.raises(InvalidArgument):
        snapshot_store.save(Snapshot("", 1, {"v": 1}, 1))
    with pytest.raises(InvalidArgument):
        snapshot_store.load("")
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 0


# -- immutability ------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "DELETE FROM finam.events",
    "UPDATE finam.events SET payload = '{}'::jsonb",
    "UPDATE finam.events SET stream = 'elsewhere' WHERE false",
    "TRUNCATE finam.events",
])
def test_history_is_immutable(store, db, statement):
    results = store.append("portfolio-1", [new_event(1), new_event(2)])

    with pytest.raises(HistoryIsImmutable) as excinfo:
        with translated_errors():
            db.execute(statement)

    assert_sqlstate(excinfo, "FC004")
    assert [(e.id, e.version) for e in store.read_stream("portfolio-1")] == [(r.id, r.version) for r in results]


def test_translated_errors_leaves_other_database_errors_alone(db):
    with pytest.raises(psycopg.errors.UndefinedTable):
        with translated_errors():
            db.execute("SELECT * FROM finam.no_such_table")


def test_wrong_expected_version_from_sql_carries_json_detail(db):
    """Clients in any language can parse DETAIL: check it is the JSON the Python client relies on."""
    db.execute("SELECT * FROM finam.append_event('s-1', %s, 'T', '{}'::jsonb)", (uuid4(),))
    with pytest.raises(psycopg.Error) as excinfo:
        db.execute("SELECT * FROM finam.append_event('s-1', %s, 'T', '{}'::jsonb, 5)", (uuid4(),))
    assert excinfo.value.sqlstate == "FC001"
    assert json.loads(excinfo.value.diag.message_detail) == {"stream": "s-1", "expected": 5, "actual": 1}
