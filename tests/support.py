"""Helpers shared by the SQL-level and client tests (real PostgreSQL; no mocks)."""

from __future__ import annotations

import time

import psycopg
import pytest

MIGRATION_IDS = [
    "0001.create-schema-and-roles",
    "0002.create-events-table",
    "0003.create-snapshots-table",
    "0004.create-listeners-table",
    "0005.install-api",
    "0006.create-checkpoints-table",
    "0007.install-api-1.1",
    "0008.install-api-1.2",
]

#: finam.schema_version() after every migration.
API_VERSION = "1.2.0"

API_FUNCTIONS = {
    "append_batch", "append_event", "append_events", "assert_valid_event", "assert_valid_expected_version",
    "assert_valid_page", "assert_valid_stream", "category", "cursor_transaction", "load_snapshot",
    "raise_wrong_expected_version", "read_all", "read_category", "read_stream", "read_stream_backward",
    "register_listener", "reject_history_change", "save_snapshot", "schema_version", "stream_lock_key",
    "stream_version", "unregister_listener",
    # 1.1.0
    "advance_checkpoint", "assert_valid_checkpoint_name", "delete_checkpoint", "is_readable", "load_checkpoint",
}


def store_state(db) -> tuple:
    """What the store holds: (event count, max position, snapshot count, snapshot contents)."""
    count, max_position = db.execute(
        "SELECT count(*), coalesce(max(position), 0) FROM finam.events").fetchone()
    snapshots = db.execute(
        "SELECT count(*), coalesce(string_agg(stream || ':' || schema_version || ':' || version || ':' || state::text,"
        " ',' ORDER BY stream, schema_version), '') FROM finam.snapshots").fetchone()
    return count, max_position, snapshots


def expect_error(db, sqlstate: str, sql: str, params=None) -> psycopg.Error:
    """Runs ``sql``, asserts it fails with ``sqlstate`` and wrote nothing; returns the error."""
    before = store_state(db)
    with pytest.raises(psycopg.Error) as info:
        db.execute(sql, params)
    err = info.value
    assert err.sqlstate == sqlstate, f"expected {sqlstate}, got {err.sqlstate}: {err}"
    assert store_state(db) == before, "a failed call must not write anything"
    return err


def message(err: psycopg.Error) -> str:
    """The primary message of a database error."""
    return err.diag.message_primary or str(err)


def wait_until_readable(db, timeout: float = 30.0) -> None:
    """Waits until every committed event of this database is below read_all's horizon.

    read_all / read_category only return events of transactions older than the
    oldest transaction still running *anywhere on the server* (pg_snapshot_xmin),
    so a busy neighbour database (another test run on the same server) delays
    them. This computes the horizon independently of read_all, so it cannot mask
    a read_all bug: after it returns, read_all must deliver every committed event.
    """
    deadline = time.monotonic() + timeout
    while not db.execute(
            "SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true)"
            " FROM finam.events").fetchone()[0]:
        assert time.monotonic() < deadline, "committed events stayed above the read horizon"
        time.sleep(0.02)
