"""SQL-level tests of the write side: append_event, append_events, append_batch,
positions and the NOTIFY wake-up hint.

Every test talks to the SQL API the way psql or a client in another language
would: plain SQL with named arguments over a real PostgreSQL connection.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb
from support import expect_error, message, store_state

APPEND_EVENT = (
    "SELECT * FROM finam.append_event(stream => %s, id => %s, type => %s, payload => %s::jsonb,"
    " expected_version => %s)"
)
APPEND_EVENT_META = (
    "SELECT * FROM finam.append_event(stream => %s, id => %s, type => %s, payload => %s::jsonb,"
    " expected_version => %s, metadata => %s::jsonb)"
)
APPEND_EVENTS = (
    "SELECT * FROM finam.append_events(stream => %s, events => %s::jsonb, expected_version => %s)"
)
APPEND_BATCH = (
    "SELECT * FROM finam.append_batch(stream => %s, ids => %s::uuid[], types => %s::text[],"
    " payloads => %s::jsonb[], metadata => %s::jsonb[], expected_version => %s)"
)


# -- helpers ----------------------------------------------------------------------------------


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def js(value) -> str:
    """A JSON literal for a ``%s::jsonb`` parameter."""
    return json.dumps(value)


def append(db, stream, event_id, type_="Deposited", payload=None, expected_version=None):
    """append_event; returns (version, position, duplicate)."""
    payload = {"amount": "1.00"} if payload is None else payload
    rows = db.execute(APPEND_EVENT, (stream, event_id, type_, js(payload), expected_version)).fetchall()
    assert len(rows) == 1
    return rows[0]


def append_events(db, stream, events, expected_version=None):
    """append_events; ``events`` is a list of dicts (ids may be UUID objects)."""
    return db.execute(APPEND_EVENTS, (stream, js(jsonable(events)), expected_version)).fetchall()


def jsonable(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def event(event_id=None, type_="Deposited", payload=None, **extra):
    e = {"id": str(event_id or new_id()), "type": type_, "payload": {"n": "1"} if payload is None else payload}
    e.update(extra)
    return e








def stream_rows(db, stream):
    return db.execute(
        "SELECT id, type, version, payload, metadata, position FROM finam.read_stream(stream => %s)",
        (stream,)).fetchall()


def stream_version(db, stream):
    return db.execute("SELECT finam.stream_version(stream => %s)", (stream,)).fetchone()[0]


# -- append_event: versions and expected_version ----------------------------------------------


def test_empty_stream_has_version_zero(db):
    assert stream_version(db, "account-empty") == 0


def test_versions_start_at_one_and_are_contiguous(db):
    versions = [append(db, "account-1", new_id())[0] for _ in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    assert stream_version(db, "account-1") == 5
    assert [r[2] for r in stream_rows(db, "account-1")] == [1, 2, 3, 4, 5]


def test_append_returns_not_duplicate_and_stores_the_event(db):
    event_id = new_id()
    version, position, duplicate = append(db, "account-1", event_id, "Deposited", {"amount": "10.50"})
    assert (version, duplicate) == (1, False)
    rows = stream_rows(db, "account-1")
    assert len(rows) == 1
    stored_id, type_, stored_version, payload, metadata, stored_position = rows[0]
    assert stored_id == event_id
    assert type_ == "Deposited"
    assert stored_version == 1
    assert payload == {"amount": "10.50"}
    assert stored_position == position


def test_streams_have_independent_versions(db):
    assert append(db, "account-a", new_id())[0] == 1
    assert append(db, "account-b", new_id())[0] == 1
    assert append(db, "account-a", new_id())[0] == 2
    assert stream_version(db, "account-a") == 2
    assert stream_version(db, "account-b") == 1


def test_expected_version_null_means_no_check(db):
    append(db, "account-1", new_id())
    append(db, "account-1", new_id())
    assert append(db, "account-1", new_id(), expected_version=None)[0] == 3


def test_expected_version_zero_on_empty_stream(db):
    assert append(db, "account-1", new_id(), expected_version=0)[0] == 1


def test_expected_version_matching_current_version_appends(db):
    assert append(db, "account-1", new_id(), expected_version=0)[0] == 1
    assert append(db, "account-1", new_id(), expected_version=1)[0] == 2
    version, position, duplicate = append(db, "account-1", new_id(), expected_version=2)
    assert (version, duplicate) == (3, False)
    assert position == db.execute("SELECT max(position) FROM finam.events").fetchone()[0]


@pytest.mark.parametrize("expected", [0, 1, 3, 100])
def test_wrong_expected_version_is_fc001(db, expected):
    stream = "account-fc001"
    append(db, stream, new_id())
    append(db, stream, new_id())  # actual version: 2
    err = expect_error(db, "FC001", APPEND_EVENT, (stream, new_id(), "Deposited", js({}), expected))
    text = message(err)
    assert stream in text
    assert f"expected {expected}" in text
    assert "actual 2" in text
    assert json.loads(err.diag.message_detail) == {"stream": stream, "expected": expected, "actual": 2}


def test_fc001_on_empty_stream_reports_actual_zero(db):
    err = expect_error(db, "FC001", APPEND_EVENT, ("account-new", new_id(), "Opened", js({}), 1))
    assert json.loads(err.diag.message_detail) == {"stream": "account-new", "expected": 1, "actual": 0}
    assert stream_version(db, "account-new") == 0


def test_fc001_draws_no_position(db):
    """Lock, check, then insert: a refused append draws no sequence value."""
    _, first_position, _ = append(db, "account-1", new_id())
    expect_error(db, "FC001", APPEND_EVENT, ("account-1", new_id(), "Deposited", js({}), 5))
    _, next_position, _ = append(db, "account-1", new_id())
    assert next_position == first_position + 1


def test_duplicate_retry_and_fc002_draw_no_position(db):
    """A retry or an id clash is decided before the insert: no sequence value is drawn."""
    event_id = new_id()
    _, first_position, _ = append(db, "account-1", event_id)
    assert append(db, "account-1", event_id)[2] is True
    expect_error(db, "FC002", APPEND_EVENT, ("account-2", event_id, "Deposited", js({"amount": "1.00"}), None))
    _, next_position, _ = append(db, "account-1", new_id())
    assert next_position == first_position + 1


# -- append_event: idempotency ----------------------------------------------------------------


def test_idempotent_append(db):
    stream, event_id, payload = "account-idem", new_id(), {"amount": "5.00", "currency": "EUR"}
    original = append(db, stream, event_id, "Deposited", payload, expected_version=0)
    assert original[2] is False

    # Plain retry (no expected version): the original version and position, nothing written.
    before = store_state(db)
    retry = append(db, stream, event_id, "Deposited", payload)
    assert retry == (original[0], original[1], True)
    assert store_state(db) == before

    # Retry with the expected version the first call used, now stale (the stream is at 1).
    retry = append(db, stream, event_id, "Deposited", payload, expected_version=0)
    assert retry == (original[0], original[1], True)
    assert store_state(db) == before

    # Still a duplicate after other events moved the stream on.
    append(db, stream, new_id())
    append(db, stream, new_id())
    before = store_state(db)
    retry = append(db, stream, event_id, "Deposited", payload, expected_version=0)
    assert retry == (original[0], original[1], True)
    retry = append(db, stream, event_id, "Deposited", payload, expected_version=3)
    assert retry == (original[0], original[1], True)
    assert store_state(db) == before
    assert stream_version(db, stream) == 3
    assert [r[0] for r in stream_rows(db, stream)].count(event_id) == 1


def test_idempotent_append_payload_key_order_is_irrelevant(db):
    """jsonb equality: the same object written with another key order is the same payload."""
    event_id = new_id()
    original = db.execute(APPEND_EVENT, ("account-1", event_id, "Deposited", '{"a": 1, "b": 2}', None)).fetchone()
    before = store_state(db)
    retry = db.execute(APPEND_EVENT, ("account-1", event_id, "Deposited", '{"b": 2, "a": 1}', None)).fetchone()
    assert retry == (original[0], original[1], True)
    assert store_state(db) == before


@pytest.mark.parametrize("expected_version", [None, 1, 0])
def test_same_id_different_payload_is_fc002(db, expected_version):
    event_id = new_id()
    append(db, "account-1", event_id, "Deposited", {"amount": "1.00"})
    err = expect_error(db, "FC002", APPEND_EVENT,
                       ("account-1", event_id, "Deposited", js({"amount": "2.00"}), expected_version))
    assert "account-1" in message(err)
    assert str(event_id) in message(err)


@pytest.mark.parametrize("expected_version", [None, 1, 0])
def test_same_id_different_type_is_fc002(db, expected_version):
    event_id = new_id()
    append(db, "account-1", event_id, "Deposited", {"amount": "1.00"})
    err = expect_error(db, "FC002", APPEND_EVENT,
                       ("account-1", event_id, "Withdrawn", js({"amount": "1.00"}), expected_version))
    assert "account-1" in message(err)


@pytest.mark.parametrize("expected_version", [None, 0, 5])
def test_same_id_different_stream_is_fc002(db, expected_version):
    event_id = new_id()
    append(db, "account-1", event_id, "Deposited", {"amount": "1.00"})
    err = expect_error(db, "FC002", APPEND_EVENT,
                       ("account-2", event_id, "Deposited", js({"amount": "1.00"}), expected_version))
    assert "account-2" in message(err)
    assert stream_version(db, "account-2") == 0


# -- append_event: metadata -------------------------------------------------------------------


def test_metadata_defaults_to_empty_object(db):
    append(db, "account-1", new_id())
    assert stream_rows(db, "account-1")[0][4] == {}


def test_metadata_is_stored_and_returned_by_read_stream(db):
    meta = {"correlation_id": str(new_id()), "causation_id": str(new_id()), "user": "alice"}
    db.execute(APPEND_EVENT_META, ("account-1", new_id(), "Deposited", js({"amount": "1"}), None, js(meta)))
    assert stream_rows(db, "account-1")[0][4] == meta


def test_null_metadata_is_stored_as_empty_object(db):
    db.execute(APPEND_EVENT_META, ("account-1", new_id(), "Deposited", js({}), None, None))
    assert stream_rows(db, "account-1")[0][4] == {}


# -- append_event: invalid arguments (FC003) --------------------------------------------------


@pytest.mark.parametrize("stream", [None, ""])
def test_null_or_empty_stream_is_fc003(db, stream):
    expect_error(db, "FC003", APPEND_EVENT, (stream, new_id(), "Deposited", js({}), None))


def test_stream_longer_than_512_characters_is_fc003(db):
    stream = "account-" + "x" * 505  # 513 characters
    assert len(stream) == 513
    err = expect_error(db, "FC003", APPEND_EVENT, (stream, new_id(), "Deposited", js({}), None))
    assert stream[:40] in message(err)


def test_stream_of_exactly_512_characters_is_accepted(db):
    stream = "account-" + "x" * 504
    assert len(stream) == 512
    assert append(db, stream, new_id())[0] == 1


def test_null_id_is_fc003(db):
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", None, "Deposited", js({}), None))
    assert "account-1" in message(err)


@pytest.mark.parametrize("type_", [None, ""])
def test_null_or_empty_type_is_fc003(db, type_):
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", new_id(), type_, js({}), None))
    assert "account-1" in message(err)


def test_null_payload_is_fc003(db):
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", new_id(), "Deposited", None, None))
    assert "account-1" in message(err)


@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "42", "null", "true"])
def test_non_object_payload_is_fc003(db, payload):
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", new_id(), "Deposited", payload, None))
    assert "account-1" in message(err)


@pytest.mark.parametrize("metadata", ["[]", '"text"', "1", "null"])
def test_non_object_metadata_is_fc003(db, metadata):
    err = expect_error(db, "FC003", APPEND_EVENT_META,
                       ("account-1", new_id(), "Deposited", js({}), None, metadata))
    assert "account-1" in message(err)


@pytest.mark.parametrize("expected_version", [-1, -100])
def test_negative_expected_version_is_fc003(db, expected_version):
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", new_id(), "Deposited", js({}), expected_version))
    assert "account-1" in message(err)


def test_payload_over_one_mebibyte_is_fc003(db):
    payload = {"blob": "x" * (1024 * 1024 + 100)}
    err = expect_error(db, "FC003", APPEND_EVENT, ("account-1", new_id(), "Deposited", js(payload), None))
    assert "account-1" in message(err)


def test_payload_just_under_one_mebibyte_is_accepted(db):
    payload = {"blob": "x" * (1024 * 1024 - 4096)}
    assert append(db, "account-1", new_id(), "Deposited", payload)[:1] == (1,)


# -- append_events ----------------------------------------------------------------------------


def test_append_events_returns_rows_in_array_order(db):
    events = [event(type_=f"T{i}", payload={"i": i}) for i in range(4)]
    rows = append_events(db, "account-1", events)
    assert [str(r[0]) for r in rows] == [e["id"] for e in events]
    assert [r[1] for r in rows] == [1, 2, 3, 4]
    assert all(r[3] is False for r in rows)
    positions = [r[2] for r in rows]
    assert positions == sorted(positions) and len(set(positions)) == 4
    stored = stream_rows(db, "account-1")
    assert [(str(r[0]), r[1], r[2], r[3], r[5]) for r in stored] == [
        (e["id"], e["type"], i + 1, e["payload"], positions[i]) for i, e in enumerate(events)]


def test_append_events_continues_after_current_version(db):
    append(db, "account-1", new_id())
    append(db, "account-1", new_id())
    rows = append_events(db, "account-1", [event(), event()], expected_version=2)
    assert [r[1] for r in rows] == [3, 4]


def test_append_events_stores_metadata(db):
    meta = {"correlation_id": "c-1"}
    append_events(db, "account-1", [event(metadata=meta), event()])
    assert [r[4] for r in stream_rows(db, "account-1")] == [meta, {}]


def test_append_events_whole_batch_retry_is_duplicate(db):
    events = [event(payload={"i": i}) for i in range(3)]
    original = append_events(db, "account-1", events, expected_version=0)
    before = store_state(db)
    retry = append_events(db, "account-1", events)
    assert [(r[0], r[1], r[2]) for r in retry] == [(r[0], r[1], r[2]) for r in original]
    assert all(r[3] is True for r in retry)
    # ... also with the now stale expected version of the first call.
    retry = append_events(db, "account-1", events, expected_version=0)
    assert [(r[0], r[1], r[2], r[3]) for r in retry] == [(r[0], r[1], r[2], True) for r in original]
    assert store_state(db) == before


def test_append_events_partial_overlap_is_fc002(db):
    stored = [event(), event()]
    append_events(db, "account-1", stored)
    err = expect_error(db, "FC002", APPEND_EVENTS,
                       ("account-1", js([stored[1], event()]), None))
    assert "account-1" in message(err)
    assert stream_version(db, "account-1") == 2


def test_append_events_same_id_with_other_content_is_fc002(db):
    first = event(payload={"amount": "1"})
    append_events(db, "account-1", [first])
    changed = dict(first, payload={"amount": "2"})
    err = expect_error(db, "FC002", APPEND_EVENTS, ("account-1", js([changed]), None))
    assert "account-1" in message(err)


def test_append_events_same_id_in_other_stream_is_fc002(db):
    first = event()
    append_events(db, "account-1", [first])
    err = expect_error(db, "FC002", APPEND_EVENTS, ("account-2", js([first]), None))
    assert "account-2" in message(err)


@pytest.mark.parametrize("expected", [1, 5])
def test_append_events_wrong_expected_version_writes_nothing(db, expected):
    err = expect_error(db, "FC001", APPEND_EVENTS,
                       ("account-1", js([event(), event(), event()]), expected))
    assert "account-1" in message(err)
    assert json.loads(err.diag.message_detail) == {"stream": "account-1", "expected": expected, "actual": 0}
    assert stream_version(db, "account-1") == 0


def test_append_events_is_all_or_nothing_on_invalid_element(db):
    """An invalid last element refuses the whole batch (valid elements before it are not stored)."""
    bad = [event(), event(), event(payload=[1, 2])]
    expect_error(db, "FC003", APPEND_EVENTS, ("account-1", js(bad), None))
    assert stream_version(db, "account-1") == 0


MALFORMED_BATCHES = {
    "not an array": {"id": str(uuid.uuid4()), "type": "T", "payload": {}},
    "json null": None,
    "string": "events",
    "empty array": [],
    "element not object": [["not", "an", "object"]],
    "element is string": ["x"],
    "unknown key": [{"id": str(uuid.uuid4()), "type": "T", "payload": {}, "extra": 1}],
    "missing id": [{"type": "T", "payload": {}}],
    "invalid uuid": [{"id": "not-a-uuid", "type": "T", "payload": {}}],
    "numeric id": [{"id": 12345, "type": "T", "payload": {}}],
    "null id": [{"id": None, "type": "T", "payload": {}}],
    "missing type": [{"id": str(uuid.uuid4()), "payload": {}}],
    "non-string type": [{"id": str(uuid.uuid4()), "type": 7, "payload": {}}],
    "empty type": [{"id": str(uuid.uuid4()), "type": "", "payload": {}}],
    "missing payload": [{"id": str(uuid.uuid4()), "type": "T"}],
    "null payload": [{"id": str(uuid.uuid4()), "type": "T", "payload": None}],
    "array payload": [{"id": str(uuid.uuid4()), "type": "T", "payload": [1]}],
    "non-object metadata": [{"id": str(uuid.uuid4()), "type": "T", "payload": {}, "metadata": [1]}],
}


@pytest.mark.parametrize("batch", list(MALFORMED_BATCHES.values()), ids=list(MALFORMED_BATCHES))
def test_append_events_malformed_batch_is_fc003(db, batch):
    err = expect_error(db, "FC003", APPEND_EVENTS, ("account-1", js(batch), None))
    assert "account-1" in message(err)


def test_append_events_sql_null_events_is_fc003(db):
    expect_error(db, "FC003", APPEND_EVENTS, ("account-1", None, None))


def test_append_events_duplicate_id_within_batch_is_fc003(db):
    twice = str(new_id())
    batch = [event(twice, payload={"i": 1}), event(), event(twice, payload={"i": 1})]
    err = expect_error(db, "FC003", APPEND_EVENTS, ("account-1", js(batch), None))
    assert "account-1" in message(err)


@pytest.mark.parametrize("stream", [None, "", "s" * 513])
def test_append_events_invalid_stream_is_fc003(db, stream):
    expect_error(db, "FC003", APPEND_EVENTS, (stream, js([event()]), None))


def test_append_events_negative_expected_version_is_fc003(db):
    expect_error(db, "FC003", APPEND_EVENTS, ("account-1", js([event()]), -1))


def test_append_events_payload_over_one_mebibyte_is_fc003(db):
    batch = [event(), event(payload={"blob": "x" * (1024 * 1024 + 100)})]
    expect_error(db, "FC003", APPEND_EVENTS, ("account-1", js(batch), None))


# -- append_batch -----------------------------------------------------------------------------


def batch_args(n, types=None, payloads=None):
    ids = [new_id() for _ in range(n)]
    types = types or [f"T{i}" for i in range(n)]
    payloads = payloads or [Jsonb({"i": i}) for i in range(n)]
    return ids, types, payloads


def test_append_batch_appends_in_order(db):
    ids, types, payloads = batch_args(3)
    rows = db.execute(APPEND_BATCH, ("account-1", ids, types, payloads, None, 0)).fetchall()
    assert [r[0] for r in rows] == ids
    assert [r[1] for r in rows] == [1, 2, 3]
    assert all(r[3] is False for r in rows)
    positions = [r[2] for r in rows]
    assert positions == sorted(positions) and len(set(positions)) == 3
    stored = stream_rows(db, "account-1")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in stored] == [
        (ids[i], types[i], i + 1, {"i": i}, {}) for i in range(3)]


def test_append_batch_with_metadata_and_default_arguments(db):
    ids, types, payloads = batch_args(2)
    rows = db.execute(
        "SELECT * FROM finam.append_batch(stream => %s, ids => %s::uuid[], types => %s::text[],"
        " payloads => %s::jsonb[], metadata => %s::jsonb[])",
        ("account-1", ids, types, payloads, [Jsonb({"m": 1}), Jsonb({"m": 2})])).fetchall()
    assert [r[1] for r in rows] == [1, 2]
    assert [r[4] for r in stream_rows(db, "account-1")] == [{"m": 1}, {"m": 2}]
    # metadata and expected_version have defaults
    more = db.execute(
        "SELECT * FROM finam.append_batch(stream => %s, ids => %s::uuid[], types => %s::text[],"
        " payloads => %s::jsonb[])",
        ("account-1", [new_id()], ["T"], [Jsonb({})])).fetchall()
    assert [r[1] for r in more] == [3]
    assert stream_rows(db, "account-1")[2][4] == {}


def test_append_batch_whole_batch_retry_is_duplicate(db):
    ids, types, payloads = batch_args(3)
    original = db.execute(APPEND_BATCH, ("account-1", ids, types, payloads, None, 0)).fetchall()
    before = store_state(db)
    retry = db.execute(APPEND_BATCH, ("account-1", ids, types, payloads, None, 0)).fetchall()
    assert [(r[0], r[1], r[2]) for r in retry] == [(r[0], r[1], r[2]) for r in original]
    assert all(r[3] is True for r in retry)
    assert store_state(db) == before


def test_append_batch_partial_overlap_is_fc002(db):
    ids, types, payloads = batch_args(2)
    db.execute(APPEND_BATCH, ("account-1", ids, types, payloads, None, None))
    expect_error(db, "FC002", APPEND_BATCH,
                 ("account-1", [ids[0], new_id()], ["T0", "T9"], [payloads[0], Jsonb({})], None, None))


def test_append_batch_same_id_other_content_is_fc002(db):
    ids, types, payloads = batch_args(1)
    db.execute(APPEND_BATCH, ("account-1", ids, types, payloads, None, None))
    expect_error(db, "FC002", APPEND_BATCH, ("account-1", ids, types, [Jsonb({"other": True})], None, None))
    expect_error(db, "FC002", APPEND_BATCH, ("account-1", ids, ["Other"], payloads, None, None))
    expect_error(db, "FC002", APPEND_BATCH, ("account-2", ids, types, payloads, None, None))


def test_append_batch_wrong_expected_version_is_fc001(db):
    ids, types, payloads = batch_args(2)
    err = expect_error(db, "FC001", APPEND_BATCH, ("account-1", ids, types, payloads, None, 3))
    assert json.loads(err.diag.message_detail) == {"stream": "account-1", "expected": 3, "actual": 0}


@pytest.mark.parametrize("shape", ["short types", "long payloads", "short metadata", "null types", "null payloads"])
def test_append_batch_mismatched_array_lengths_is_fc003(db, shape):
    ids, types, payloads = batch_args(2)
    metadata = None
    if shape == "short types":
        types = types[:1]
    elif shape == "long payloads":
        payloads = payloads + [Jsonb({})]
    elif shape == "short metadata":
        metadata = [Jsonb({})]
    elif shape == "null types":
        types = None
    elif shape == "null payloads":
        payloads = None
    err = expect_error(db, "FC003", APPEND_BATCH, ("account-1", ids, types, payloads, metadata, None))
    assert "account-1" in message(err)


@pytest.mark.parametrize("ids", [None, []])
def test_append_batch_empty_batch_is_fc003(db, ids):
    expect_error(db, "FC003", APPEND_BATCH, ("account-1", ids, [], [], None, None))


def test_append_batch_duplicate_id_within_batch_is_fc003(db):
    twice = new_id()
    expect_error(db, "FC003", APPEND_BATCH,
                 ("account-1", [twice, twice], ["T", "T"], [Jsonb({}), Jsonb({})], None, None))


def test_append_batch_invalid_element_is_fc003(db):
    expect_error(db, "FC003", APPEND_BATCH,
                 ("account-1", [new_id(), None], ["T", "T"], [Jsonb({}), Jsonb({})], None, None))
    expect_error(db, "FC003", APPEND_BATCH,
                 ("account-1", [new_id(), new_id()], ["T", ""], [Jsonb({}), Jsonb({})], None, None))
    expect_error(db, "FC003", APPEND_BATCH,
                 ("account-1", [new_id(), new_id()], ["T", "T"], [Jsonb({}), Jsonb([1])], None, None))
    expect_error(db, "FC003", APPEND_BATCH,
                 ("account-1", [new_id()], ["T"], [Jsonb({})], [Jsonb("meta")], None))


# -- positions --------------------------------------------------------------------------------


def test_positions_are_unique_and_increase_in_append_order(db):
    positions = []
    for i in range(6):
        positions.append(append(db, f"account-{i % 3}", new_id())[1])
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    stored = [r[0] for r in db.execute("SELECT position FROM finam.events ORDER BY position")]
    assert stored == positions


def test_batch_gets_consecutive_versions_and_increasing_positions(db):
    append(db, "account-1", new_id())
    append(db, "account-other", new_id())
    rows = append_events(db, "account-1", [event() for _ in range(5)])
    assert [r[1] for r in rows] == [2, 3, 4, 5, 6]
    positions = [r[2] for r in rows]
    assert all(a < b for a, b in zip(positions, positions[1:]))
    earlier = db.execute("SELECT max(position) FROM finam.events WHERE stream = 'account-other'").fetchone()[0]
    assert positions[0] > earlier


# -- NOTIFY -----------------------------------------------------------------------------------


@pytest.fixture
def listener(dsn):
    """An autocommit session that LISTENs on finam_events (registration is up to the test)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("LISTEN finam_events")
        yield conn


def received(conn, timeout):
    return [n for n in conn.notifies(timeout=timeout, stop_after=1)]


def test_registered_listener_is_notified_with_stream_name(db, listener):
    listener.execute("SELECT finam.register_listener(name => 'x')")
    append(db, "account-notify", new_id())
    notes = received(listener, 5)
    assert len(notes) == 1
    assert notes[0].channel == "finam_events"
    assert notes[0].payload == "account-notify"


def test_notification_arrives_only_after_commit(db, dsn, listener):
    listener.execute("SELECT finam.register_listener(name => 'x')")
    with psycopg.connect(dsn) as writer:  # not autocommit
        writer.execute(APPEND_EVENT, ("account-late", new_id(), "T", js({}), None))
        assert received(listener, 0.5) == []
        writer.commit()
    notes = received(listener, 5)
    assert [n.payload for n in notes] == ["account-late"]


def test_append_events_notifies_registered_listener(db, listener):
    listener.execute("SELECT finam.register_listener(name => 'x')")
    append_events(db, "account-batch", [event(), event()])
    notes = received(listener, 5)
    assert notes and notes[0].payload == "account-batch"


def test_no_notification_without_registration(db, listener):
    append(db, "account-quiet", new_id())
    assert received(listener, 1) == []


def test_no_notification_after_unregister(db, listener):
    listener.execute("SELECT finam.register_listener(name => 'x')")
    assert listener.execute("SELECT finam.unregister_listener(name => 'x')").fetchone()[0] is True
    append(db, "account-quiet", new_id())
    assert received(listener, 1) == []


def test_unregister_unknown_listener_returns_false(db):
    assert db.execute("SELECT finam.unregister_listener(name => 'nobody')").fetchone()[0] is False


def test_no_notification_after_registration_expired(db, listener):
    listener.execute("SELECT finam.register_listener(name => 'x', ttl => '1 millisecond')")
    time.sleep(0.05)
    append(db, "account-quiet", new_id())
    assert received(listener, 1) == []


def test_register_listener_returns_expiry(db):
    expires, now = db.execute(
        "SELECT finam.register_listener(name => 'x', ttl => '10 minutes'), now()").fetchone()
    assert (expires - now).total_seconds() == pytest.approx(600)


@pytest.mark.parametrize("name,ttl", [
    ("", "1 minute"),
    (None, "1 minute"),
    ("x", "0 seconds"),
    ("x", "-1 second"),
    ("x", "1 day 1 second"),
    ("x", "2 days"),
])
def test_register_listener_invalid_argument_is_fc003(db, name, ttl):
    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT finam.register_listener(name => %s, ttl => %s::interval)", (name, ttl))
    assert info.value.sqlstate == "FC003"
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 0


def test_register_listener_accepts_one_day(db):
    db.execute("SELECT finam.register_listener(name => 'x', ttl => '1 day')")
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 1


# -- concurrent writers -----------------------------------------------------------------------


def run_in_thread(dsn, sql, params):
    """Runs ``sql`` in its own autocommit session on a thread; returns (thread, result dict, pid)."""
    import threading

    conn = psycopg.connect(dsn, autocommit=True)
    pid = conn.info.backend_pid
    result = {}

    def work():
        try:
            result["rows"] = conn.execute(sql, params).fetchall()
        except psycopg.Error as err:
            result["error"] = err
        finally:
            conn.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, result, pid


def wait_until_waiting_on_lock(db, pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"session {pid} never waited on a lock")


def test_concurrent_writer_with_same_expected_version_gets_fc001(db, dsn):
    with psycopg.connect(dsn) as a:  # holds the stream lock until commit
        a.execute(APPEND_EVENT, ("account-race", new_id(), "T", js({}), 0))
        thread, result, pid = run_in_thread(dsn, APPEND_EVENT, ("account-race", new_id(), "T", js({}), 0))
        wait_until_waiting_on_lock(db, pid)
        a.commit()
    thread.join(10)
    assert not thread.is_alive()
    err = result.get("error")
    assert err is not None and err.sqlstate == "FC001", result
    assert json.loads(err.diag.message_detail) == {"stream": "account-race", "expected": 0, "actual": 1}
    assert stream_version(db, "account-race") == 1


def test_concurrent_writers_without_expected_version_are_serialized(db, dsn):
    with psycopg.connect(dsn) as a:
        a.execute(APPEND_EVENT, ("account-race", new_id(), "T", js({}), None))
        thread, result, pid = run_in_thread(dsn, APPEND_EVENT, ("account-race", new_id(), "T", js({}), None))
        wait_until_waiting_on_lock(db, pid)
        a.commit()
    thread.join(10)
    assert "error" not in result, result
    assert result["rows"][0][0] == 2
    assert [r[2] for r in stream_rows(db, "account-race")] == [1, 2]


# --------------------------------------------------------------------------- durability

DURABLE_WRITES = {
    "append_event": "SELECT * FROM finam.append_event('account-d', gen_random_uuid(), 'Deposited', '{}'::jsonb)",
    "append_events": "SELECT * FROM finam.append_events('account-d', jsonb_build_array(jsonb_build_object("
                     "'id', gen_random_uuid(), 'type', 'Deposited', 'payload', '{}'::jsonb)))",
    "append_batch": "SELECT * FROM finam.append_batch('account-d', ARRAY[gen_random_uuid()], ARRAY['Deposited'], "
                    "ARRAY['{}'::jsonb])",
    "advance_checkpoint": "SELECT finam.advance_checkpoint('projection-d', 0, "
                          "(SELECT max(position) FROM finam.events))",
}


@pytest.mark.parametrize("session_value, in_transaction", [
    ("off", "on"),                     # an acknowledged write must survive a crash
    ("on", "on"),
    ("local", "local"),                # the DBA's replication choices are kept
    ("remote_write", "remote_write"),
    ("remote_apply", "remote_apply"),
])
@pytest.mark.parametrize("call", list(DURABLE_WRITES))
def test_writes_commit_durably_whatever_the_session_says(db, call, session_value, in_transaction):
    append(db, "account-d", new_id())
    db.execute(f"SET synchronous_commit = {session_value}")
    with db.transaction():
        rows = db.execute(DURABLE_WRITES[call]).fetchall()
        assert rows and rows[0][0] is not None
        assert db.execute("SELECT current_setting('synchronous_commit')").fetchone()[0] == in_transaction
    # only that transaction: the session keeps its own setting
    assert db.execute("SELECT current_setting('synchronous_commit')").fetchone()[0] == session_value
