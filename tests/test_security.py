"""Security of the SQL product: immutable history, roles and grants, catalog
hygiene (pinned search_path, comments, no PUBLIC execute), search_path hijack
resistance and the per-stream advisory lock.

Everything runs against a real PostgreSQL (the ``db`` fixture: a fresh,
migrated database per test, connected as a superuser in autocommit mode).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb

from finam_thin.database import configure_connection
from support import API_FUNCTIONS, wait_until_readable

SEARCH_PATH = ["pg_catalog", "finam", "pg_temp"]
TABLES = ("events", "snapshots", "listeners", "checkpoints")
VIEWS = ("streams", "category_summary", "type_summary")
SECURITY_DEFINER_FUNCTIONS = {
    "append_event", "append_events", "append_batch", "save_snapshot",
    "register_listener", "unregister_listener", "advance_checkpoint", "delete_checkpoint",
}
WRITE_FUNCTIONS = ("append_event", "append_events", "append_batch", "save_snapshot", "advance_checkpoint",
                   "delete_checkpoint")


# --------------------------------------------------------------------------- helpers


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def append_event(conn, stream, event_id=None, type_="Deposited", payload=None, expected_version=None):
    event_id = event_id or new_id()
    payload = {"amount": "1.00"} if payload is None else payload
    return conn.execute(
        "SELECT version, position, duplicate FROM finam.append_event(%s, %s, %s, %s, %s)",
        (stream, event_id, type_, Jsonb(payload), expected_version),
    ).fetchone()


def sqlstate_of(callable_, *args, **kwargs) -> str | None:
    """Run ``callable_``; return the SQLSTATE it raised (None if it did not raise)."""
    try:
        callable_(*args, **kwargs)
    except psycopg.Error as error:
        return error.sqlstate
    return None


@contextlib.contextmanager
def as_role(conn, role: str):
    """SET ROLE for the duration of the block; RESET ROLE afterwards, whatever happens."""
    conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
    try:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
        yield conn
    finally:
        conn.execute("RESET ROLE")


def eventually_rows(conn, query, params=(), *, count, timeout=20.0):
    """Rows of a read_all/read_category query once ``count`` are visible.

    Those functions hide events younger than the oldest transaction still running
    anywhere on the server (by design, to stay gap-safe), so another session's open
    transaction may delay them for a moment: poll, then return what is visible.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = conn.execute(query, params).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def event_rows(conn):
    return conn.execute(
        "SELECT id, stream, type, version, payload, metadata, position FROM finam.events ORDER BY position"
    ).fetchall()


# --------------------------------------------------------------------------- immutability


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE finam.events SET payload = '{\"amount\": \"999\"}'::jsonb",
        "UPDATE finam.events SET version = version + 100 WHERE stream = 'account-1'",
        "DELETE FROM finam.events",
        "DELETE FROM finam.events WHERE stream = 'account-1'",
        "TRUNCATE finam.events",
        "TRUNCATE finam.events CASCADE",
    ],
)
def test_history_is_immutable_even_for_the_superuser(db, statement):
    for _ in range(3):
        append_event(db, "account-1")
    append_event(db, "account-2")
    is_superuser = db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    assert is_superuser, "the db fixture is expected to connect as a superuser (the table owner)"
    assert db.execute(
        "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE oid = 'finam.events'::regclass"
    ).fetchone()[0], "this connection must be the owner of finam.events"
    before = event_rows(db)
    assert len(before) == 4

    with pytest.raises(psycopg.Error) as raised:
        db.execute(statement)
    assert raised.value.sqlstate == "FC004"
    assert "immutable" in str(raised.value)

    assert event_rows(db) == before


def test_history_is_immutable_inside_an_explicit_transaction(dsn, db):
    append_event(db, "account-1")
    before = event_rows(db)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.Error) as raised:
            with conn.transaction():
                conn.execute("DELETE FROM finam.events")
        assert raised.value.sqlstate == "FC004"
    assert event_rows(db) == before


def test_update_of_zero_rows_is_rejected_too(db):
    """The trigger is per statement: even an UPDATE that matches nothing is refused."""
    with pytest.raises(psycopg.Error) as raised:
        db.execute("UPDATE finam.events SET type = 'x' WHERE false")
    assert raised.value.sqlstate == "FC004"


# --------------------------------------------------------------------------- roles


def test_roles_are_nologin_and_writer_is_a_reader(db):
    rows = dict(db.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('finam_reader', 'finam_writer')"
    ).fetchall())
    assert rows == {"finam_reader": False, "finam_writer": False}
    assert db.execute("SELECT pg_has_role('finam_writer', 'finam_reader', 'MEMBER')").fetchone()[0]
    assert not db.execute("SELECT pg_has_role('finam_reader', 'finam_writer', 'MEMBER')").fetchone()[0]


def test_writer_can_use_the_write_and_read_api(db):
    stream = "account-w"
    snapshot_stream = "account-snap"
    append_event(db, snapshot_stream)  # prepared by the superuser, snapshotted by the writer below
    with as_role(db, "finam_writer"):
        version, position, duplicate = append_event(db, stream, expected_version=0)
        assert (version, duplicate) == (1, False) and position > 0

        rows = db.execute(
            "SELECT version, duplicate FROM finam.append_events(%s, %s, %s)",
            (stream, Jsonb([{"id": str(new_id()), "type": "Deposited", "payload": {"amount": "2"}},
                            {"id": str(new_id()), "type": "Withdrawn", "payload": {"amount": "1"}}]), 1),
        ).fetchall()
        assert rows == [(2, False), (3, False)]

        rows = db.execute(
            "SELECT version, duplicate FROM finam.append_batch(%s, %s::uuid[], %s::text[], %s::jsonb[], NULL, %s)",
            (stream, [new_id(), new_id()], ["A", "B"], [Jsonb({"n": "1"}), Jsonb({"n": "2"})], 3),
        ).fetchall()
        assert rows == [(4, False), (5, False)]

        assert db.execute("SELECT finam.save_snapshot(%s, 1, %s)",
                          (snapshot_stream, Jsonb({"cash": "1.00"}))).fetchone()[0] is True

        assert [r[0] for r in db.execute("SELECT version FROM finam.read_stream(%s)", (stream,))] == [1, 2, 3, 4, 5]
        assert [r[0] for r in db.execute("SELECT version FROM finam.read_stream_backward(%s)", (stream,))] \
            == [5, 4, 3, 2, 1]
        assert db.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0] == 5
        assert len(eventually_rows(db, "SELECT * FROM finam.read_all()", count=6)) == 6
        assert len(eventually_rows(db, "SELECT * FROM finam.read_category('account')", count=6)) == 6
        assert db.execute("SELECT version, state FROM finam.load_snapshot(%s)",
                          (snapshot_stream,)).fetchone() == (1, {"cash": "1.00"})

        expires = db.execute("SELECT finam.register_listener('writer-test', '30 seconds')").fetchone()[0]
        assert expires is not None
        assert db.execute("SELECT finam.unregister_listener('writer-test')").fetchone()[0] is True

    assert db.execute("SELECT count(*) FROM finam.events WHERE stream = %s", (stream,)).fetchone()[0] == 5
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 1


DIRECT_WRITES = {
    "events": [
        "INSERT INTO finam.events (id, stream, type, version, payload) "
        "VALUES (gen_random_uuid(), 'account-x', 'T', 99, '{}')",
        "UPDATE finam.events SET type = 'Hacked'",
        "DELETE FROM finam.events",
        "TRUNCATE finam.events",
    ],
    "snapshots": [
        "INSERT INTO finam.snapshots (stream, version, state) VALUES ('account-x', 1, '{}')",
        "UPDATE finam.snapshots SET state = '{}'",
        "DELETE FROM finam.snapshots",
        "TRUNCATE finam.snapshots",
    ],
    "listeners": [
        "INSERT INTO finam.listeners (name, expires_at) VALUES ('x', now() + interval '1 hour')",
        "UPDATE finam.listeners SET expires_at = now()",
        "DELETE FROM finam.listeners",
        "TRUNCATE finam.listeners",
    ],
    "checkpoints": [
        "INSERT INTO finam.checkpoints (name, position, transaction_id) VALUES ('x', 0, '0')",
        "UPDATE finam.checkpoints SET position = 0, transaction_id = '0'",
        "DELETE FROM finam.checkpoints",
        "TRUNCATE finam.checkpoints",
    ],
}


@pytest.mark.parametrize("role", ["finam_writer", "finam_reader"])
@pytest.mark.parametrize(
    "statement", [s for statements in DIRECT_WRITES.values() for s in statements],
)
def test_roles_cannot_write_tables_directly(db, role, statement):
    stream = "account-1"
    append_event(db, stream)
    db.execute("SELECT finam.save_snapshot(%s, 1, '{\"a\": 1}')", (stream,))
    db.execute("SELECT finam.register_listener('present', '1 hour')")
    db.execute("SELECT finam.advance_checkpoint('present', 0, (SELECT max(position) FROM finam.events))")
    before = {t: db.execute(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM finam.{t} AS t")
              .fetchone() for t in TABLES}

    with as_role(db, role):
        assert sqlstate_of(db.execute, statement) == "42501"

    after = {t: db.execute(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM finam.{t} AS t")
             .fetchone() for t in TABLES}
    assert after == before


def test_reader_can_read(db):
    stream = "account-r"
    for _ in range(3):
        append_event(db, stream)
    db.execute("SELECT finam.save_snapshot(%s, 2, '{\"cash\": \"2\"}')", (stream,))
    last_position = db.execute("SELECT max(position) FROM finam.events").fetchone()[0]
    db.execute("SELECT finam.advance_checkpoint('projection-r', 0, %s)", (last_position,))
    wait_until_readable(db)
    with as_role(db, "finam_reader"):
        assert db.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 1
        assert db.execute("SELECT stream, version FROM finam.streams").fetchall() == [(stream, 3)]
        assert db.execute("SELECT event_count FROM finam.category_summary").fetchall() == [(3,)]
        assert db.execute("SELECT event_count FROM finam.type_summary").fetchall() == [(3,)]
        assert [r[0] for r in db.execute("SELECT version FROM finam.read_stream(%s)", (stream,))] == [1, 2, 3]
        assert [r[0] for r in db.execute("SELECT version FROM finam.read_stream_backward(%s)", (stream,))] \
            == [3, 2, 1]
        assert [r[0] for r in eventually_rows(db, "SELECT version FROM finam.read_all(0, 10)", count=3)] \
            == [1, 2, 3]
        assert [r[0] for r in eventually_rows(db, "SELECT version FROM finam.read_category('account')",
                                              count=3)] == [1, 2, 3]
        assert db.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0] == 3
        assert db.execute("SELECT version, state FROM finam.load_snapshot(%s)", (stream,)).fetchone() \
            == (2, {"cash": "2"})
        assert db.execute("SELECT name, position FROM finam.checkpoints").fetchall() \
            == [("projection-r", last_position)]
        assert db.execute("SELECT finam.load_checkpoint('projection-r')").fetchone()[0] == last_position
        assert db.execute("SELECT finam.load_checkpoint('projection-none')").fetchone()[0] == 0
        assert db.execute("SELECT finam.is_readable(%s)", (last_position,)).fetchone()[0] is True
        assert db.execute("SELECT finam.schema_version()").fetchone()[0] == "1.2.0"


@pytest.mark.parametrize(
    "call",
    [
        "SELECT * FROM finam.append_event('account-r', gen_random_uuid(), 'T', '{}'::jsonb)",
        "SELECT * FROM finam.append_events('account-r', "
        "jsonb_build_array(jsonb_build_object('id', gen_random_uuid(), 'type', 'T', 'payload', '{}'::jsonb)))",
        "SELECT * FROM finam.append_batch('account-r', ARRAY[gen_random_uuid()], ARRAY['T'], ARRAY['{}'::jsonb])",
        "SELECT finam.save_snapshot('account-r', 1, '{\"cash\": \"0\"}'::jsonb)",
        "SELECT finam.advance_checkpoint('projection-r', 0, (SELECT max(position) FROM finam.events))",
        "SELECT finam.delete_checkpoint('projection-kept')",
    ],
    ids=list(WRITE_FUNCTIONS),
)
def test_reader_cannot_call_write_functions(db, call):
    append_event(db, "account-r")
    db.execute("SELECT finam.advance_checkpoint('projection-kept', 0, (SELECT max(position) FROM finam.events))")
    before = event_rows(db)
    checkpoints = db.execute("SELECT * FROM finam.checkpoints").fetchall()
    with as_role(db, "finam_reader"):
        assert sqlstate_of(db.execute, call) == "42501"
    assert event_rows(db) == before
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 0
    assert db.execute("SELECT * FROM finam.checkpoints").fetchall() == checkpoints


def test_reader_lacks_execute_on_write_functions_in_the_catalog(db):
    rows = db.execute(
        """
        SELECT p.proname,
               has_function_privilege('finam_reader', p.oid, 'EXECUTE'),
               has_function_privilege('finam_writer', p.oid, 'EXECUTE')
        FROM pg_proc AS p
        WHERE p.pronamespace = 'finam'::regnamespace AND p.proname = ANY(%s)
        """,
        (list(WRITE_FUNCTIONS),),
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(WRITE_FUNCTIONS)
    for name, reader_can, writer_can in rows:
        assert not reader_can, f"finam_reader may execute {name}"
        assert writer_can, f"finam_writer may not execute {name}"


@pytest.fixture
def fresh_role(db):
    """A role with no grants at all; dropped (with its privileges) at the end."""
    name = f"finam_test_nobody_{uuid.uuid4().hex[:12]}"
    db.execute(psycopg.sql.SQL("CREATE ROLE {} NOLOGIN").format(psycopg.sql.Identifier(name)))
    try:
        yield name
    finally:
        db.execute("RESET ROLE")
        db.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(name)))
        db.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


def test_role_without_grants_can_do_nothing(db, fresh_role):
    append_event(db, "account-1")
    assert not db.execute("SELECT has_schema_privilege(%s, 'finam', 'USAGE')", (fresh_role,)).fetchone()[0]
    denied = db.execute(
        """
        SELECT p.oid::regprocedure::text
        FROM pg_proc AS p
        WHERE p.pronamespace = 'finam'::regnamespace
          AND has_function_privilege(%s, p.oid, 'EXECUTE')
        """,
        (fresh_role,),
    ).fetchall()
    assert denied == [], f"executable by a role without grants: {denied}"
    for table in (*TABLES, *VIEWS):
        assert not db.execute("SELECT has_table_privilege(%s, %s, 'SELECT')",
                              (fresh_role, f"finam.{table}")).fetchone()[0], table

    with as_role(db, fresh_role):
        for call in ("SELECT finam.schema_version()",
                     "SELECT * FROM finam.read_stream('account-1')",
                     "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}'::jsonb)",
                     "SELECT count(*) FROM finam.events"):
            assert sqlstate_of(db.execute, call) == "42501", call


def test_schema_usage_alone_does_not_give_execute(db, fresh_role):
    """EXECUTE is revoked from PUBLIC: with USAGE on the schema, every function is still denied."""
    db.execute(psycopg.sql.SQL("GRANT USAGE ON SCHEMA finam TO {}").format(psycopg.sql.Identifier(fresh_role)))
    append_event(db, "account-1")
    before = event_rows(db)
    signatures = db.execute(
        "SELECT p.oid::regprocedure::text, p.proname, p.pronargs FROM pg_proc AS p "
        "WHERE p.pronamespace = 'finam'::regnamespace ORDER BY 1"
    ).fetchall()
    assert len(signatures) >= 20
    calls = {
        "schema_version": "SELECT finam.schema_version()",
        "stream_version": "SELECT finam.stream_version('account-1')",
        "read_stream": "SELECT * FROM finam.read_stream('account-1')",
        "read_all": "SELECT * FROM finam.read_all()",
        "load_snapshot": "SELECT * FROM finam.load_snapshot('account-1')",
        "append_event": "SELECT * FROM finam.append_event('account-1', gen_random_uuid(), 'T', '{}'::jsonb)",
        "save_snapshot": "SELECT finam.save_snapshot('account-1', 1, '{}'::jsonb)",
        "register_listener": "SELECT finam.register_listener('nobody')",
        "stream_lock_key": "SELECT finam.stream_lock_key('account-1')",
        "load_checkpoint": "SELECT finam.load_checkpoint('nobody')",
        "advance_checkpoint": "SELECT finam.advance_checkpoint('nobody', 0, 1)",
        "delete_checkpoint": "SELECT finam.delete_checkpoint('nobody')",
        "is_readable": "SELECT finam.is_readable(1)",
    }
    with as_role(db, fresh_role):
        for name, call in calls.items():
            assert sqlstate_of(db.execute, call) == "42501", name
    assert event_rows(db) == before
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM finam.checkpoints").fetchone()[0] == 0


# --------------------------------------------------------------------------- catalog hygiene


def finam_functions(db):
    return db.execute(
        """
        SELECT p.oid, p.oid::regprocedure::text, p.proname, p.prosecdef, p.proconfig, p.proacl,
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc AS p
        WHERE p.pronamespace = 'finam'::regnamespace
        ORDER BY 2
        """
    ).fetchall()


def test_api_functions_are_installed(db):
    names = {row[2] for row in finam_functions(db)}
    assert API_FUNCTIONS <= names


def test_every_function_pins_search_path(db):
    offenders = []
    for _oid, signature, _name, _secdef, proconfig, _acl, _comment in finam_functions(db):
        settings = [entry for entry in (proconfig or []) if entry.startswith("search_path=")]
        if len(settings) != 1:
            offenders.append((signature, proconfig))
            continue
        path = [part.strip().strip('"') for part in settings[0].split("=", 1)[1].split(",")]
        if path != SEARCH_PATH:
            offenders.append((signature, proconfig))
    assert offenders == []


def test_every_function_table_view_index_sequence_and_column_has_a_comment(db):
    missing = [signature for _oid, signature, _n, _s, _c, _a, comment in finam_functions(db) if not comment]
    missing += [
        f"{kind} {name}" for name, kind in db.execute(
            """
            SELECT c.relname, c.relkind::text
            FROM pg_class AS c
            WHERE c.relnamespace = 'finam'::regnamespace
              AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'S')
              AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
            """
        )
    ]
    missing += [
        f"column {table}.{column}" for table, column in db.execute(
            """
            SELECT c.relname, a.attname
            FROM pg_class AS c
            JOIN pg_attribute AS a ON a.attrelid = c.oid
            WHERE c.relnamespace = 'finam'::regnamespace
              AND c.relkind IN ('r', 'p')
              AND a.attnum > 0 AND NOT a.attisdropped
              AND coalesce(col_description(c.oid, a.attnum), '') = ''
            """
        )
    ]
    missing += [
        f"trigger {name}" for (name,) in db.execute(
            """
            SELECT t.tgname FROM pg_trigger AS t
            JOIN pg_class AS c ON c.oid = t.tgrelid
            WHERE c.relnamespace = 'finam'::regnamespace AND NOT t.tgisinternal
              AND coalesce(obj_description(t.oid, 'pg_trigger'), '') = ''
            """
        )
    ]
    if not db.execute("SELECT obj_description('finam'::regnamespace, 'pg_namespace')").fetchone()[0]:
        missing.append("schema finam")
    assert missing == []
    # The check above really covered the objects (not an empty catalog).
    counted = db.execute(
        "SELECT count(*) FILTER (WHERE relkind = 'r'), count(*) FILTER (WHERE relkind = 'v') "
        "FROM pg_class WHERE relnamespace = 'finam'::regnamespace"
    ).fetchone()
    assert counted == (len(TABLES), len(VIEWS))


def test_security_definer_functions_are_not_executable_by_public(db):
    functions = finam_functions(db)
    definers = {name for _oid, _sig, name, secdef, *_ in functions if secdef}
    assert definers == SECURITY_DEFINER_FUNCTIONS
    for oid, signature, _name, secdef, _config, acl, _comment in functions:
        public_execute = db.execute("SELECT has_function_privilege('public', %s, 'EXECUTE')", (oid,)).fetchone()[0]
        # A NULL proacl means the default privileges, which include EXECUTE for PUBLIC.
        explicit_public = db.execute(
            "SELECT %s::aclitem[] IS NULL OR EXISTS (SELECT FROM aclexplode(%s::aclitem[]) AS a "
            "WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')",
            (acl, acl),
        ).fetchone()[0]
        if secdef:
            assert not public_execute, f"PUBLIC may execute SECURITY DEFINER {signature}"
            assert not explicit_public, f"proacl of {signature} grants PUBLIC: {acl}"
        # grants.sql revokes EXECUTE from PUBLIC on every function, definer or not.
        assert not public_execute, f"PUBLIC may execute {signature}"


def test_public_has_no_table_privileges(db):
    for relation in (*TABLES, *VIEWS):
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert not db.execute("SELECT has_table_privilege('public', %s, %s)",
                                  (f"finam.{relation}", privilege)).fetchone()[0], (relation, privilege)
    assert not db.execute("SELECT has_schema_privilege('public', 'finam', 'USAGE')").fetchone()[0]
    assert not db.execute("SELECT has_schema_privilege('public', 'finam', 'CREATE')").fetchone()[0]


# --------------------------------------------------------------------------- search_path hijack

HOSTILE_SETUP = r"""
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.hijack_log (what text NOT NULL);
GRANT ALL ON evil.hijack_log TO PUBLIC;

CREATE FUNCTION evil.trap(what text) RETURNS void LANGUAGE sql VOLATILE
    SET search_path = pg_catalog
    AS $$ INSERT INTO evil.hijack_log (what) VALUES (what) $$;

CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('now'); RETURN '2000-01-01 00:00:00+00'; END $$;
CREATE FUNCTION evil.format(text) RETURNS text LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('format/1'); RETURN 'hijacked'; END $$;
CREATE FUNCTION evil.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('format/n'); RETURN 'hijacked'; END $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('jsonb_typeof'); RETURN 'object'; END $$;
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('length'); RETURN 1; END $$;
CREATE FUNCTION evil.split_part(text, text, integer) RETURNS text LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('split_part'); RETURN 'evil'; END $$;
CREATE FUNCTION evil.hashtextextended(text, bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('hashtextextended'); RETURN 0; END $$;
CREATE FUNCTION evil.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('pg_advisory_xact_lock'); END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('pg_notify'); END $$;
CREATE FUNCTION evil.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('cardinality'); RETURN 1; END $$;
CREATE FUNCTION evil.unnest(uuid[]) RETURNS SETOF uuid LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('unnest'); RETURN; END $$;
CREATE FUNCTION evil.jsonb_array_elements(jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('jsonb_array_elements'); RETURN; END $$;
CREATE FUNCTION evil.stream_lock_key(text) RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('stream_lock_key'); RETURN 0; END $$;
CREATE FUNCTION evil.assert_valid_stream(text) RETURNS void LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('assert_valid_stream'); END $$;
CREATE FUNCTION evil.stream_version(text) RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('stream_version'); RETURN 1000; END $$;

CREATE FUNCTION evil.count_star_step(bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('count(*)'); RETURN $1 + 1000; END $$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_star_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION evil.count_uuid_step(bigint, uuid) RETURNS bigint LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('count(uuid)'); RETURN $1 + 1000; END $$;
CREATE AGGREGATE evil.count(uuid) (SFUNC = evil.count_uuid_step, STYPE = bigint, INITCOND = '0');

CREATE FUNCTION evil.jsonb_eq_trap(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('jsonb ='); RAISE EXCEPTION 'hijacked: evil.= (jsonb, jsonb) ran'; END $$;
CREATE OPERATOR evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.jsonb_eq_trap);
CREATE FUNCTION evil.jsonb_ne_trap(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('jsonb <>'); RAISE EXCEPTION 'hijacked: evil.<> (jsonb, jsonb) ran'; END $$;
CREATE OPERATOR evil.<> (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.jsonb_ne_trap);
CREATE FUNCTION evil.text_eq_trap(text, text) RETURNS boolean LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
    AS $$ BEGIN PERFORM evil.trap('text ='); RETURN NOT pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq_trap);

CREATE TABLE evil.events (LIKE finam.events);
CREATE TABLE evil.snapshots (LIKE finam.snapshots);
CREATE TABLE evil.listeners (LIKE finam.listeners);
CREATE TABLE evil.checkpoints (LIKE finam.checkpoints);
INSERT INTO evil.listeners (name, registered_at, expires_at) VALUES ('evil', now(), now() + interval '1 day');
GRANT ALL ON evil.events, evil.snapshots, evil.listeners, evil.checkpoints TO PUBLIC;

CREATE TEMP TABLE events (LIKE finam.events);
CREATE TEMP TABLE snapshots (LIKE finam.snapshots);
CREATE TEMP TABLE listeners (LIKE finam.listeners);
CREATE TEMP TABLE checkpoints (LIKE finam.checkpoints);
GRANT ALL ON pg_temp.events, pg_temp.snapshots, pg_temp.listeners, pg_temp.checkpoints TO PUBLIC;
"""

HOSTILE_PATH = "SET search_path = evil, pg_temp, pg_catalog, public, finam"


def hijack_log(db):
    return [row[0] for row in db.execute("SELECT what FROM evil.hijack_log")]


def test_hostile_search_path_cannot_hijack_the_api(db):
    db.execute(HOSTILE_SETUP)
    db.execute("GRANT CREATE ON SCHEMA evil TO finam_writer")

    # Positive control: the traps are live for ordinary queries on this search_path.
    db.execute(HOSTILE_PATH)
    try:
        db.execute("SELECT now(), jsonb_typeof('1'), stream_lock_key('x'), 'a' = 'a'")
        with pytest.raises(psycopg.Error, match="hijacked"):
            db.execute("SELECT '{}'::jsonb = '{}'::jsonb")
    finally:
        db.execute("RESET search_path")
    assert {"now", "jsonb_typeof", "stream_lock_key", "text ="} <= set(hijack_log(db))
    db.execute("TRUNCATE evil.hijack_log")

    stream = "account-hijack"
    first, retry_batch_ids = new_id(), [new_id(), new_id()]
    batch = Jsonb([{"id": str(retry_batch_ids[0]), "type": "Deposited", "payload": {"amount": "2"}},
                   {"id": str(retry_batch_ids[1]), "type": "Withdrawn", "payload": {"amount": "1"}}])

    for role in ("finam_writer", None):  # as the writer, then as the superuser (the definer itself)
        if role is not None:
            context = as_role(db, role)
        else:
            context = contextlib.nullcontext(db)
            stream, first, retry_batch_ids = "account-hijack2", new_id(), [new_id(), new_id()]
            batch = Jsonb([{"id": str(i), "type": "Deposited", "payload": {"amount": "2"}}
                           for i in retry_batch_ids])
        with context:
            db.execute(HOSTILE_PATH)
            try:
                version, position, duplicate = append_event(db, stream, first, payload={"amount": "1.00"},
                                                            expected_version=0)
                assert (version, duplicate) == (1, False)
                # A retry compares payloads with jsonb = (the trap raises if it is used).
                assert append_event(db, stream, first, payload={"amount": "1.00"}) == (1, position, True)
                rows = db.execute("SELECT version, duplicate FROM finam.append_events(%s, %s, 1)",
                                  (stream, batch)).fetchall()
                assert rows == [(2, False), (3, False)]
                rows = db.execute("SELECT version, duplicate FROM finam.append_events(%s, %s, 1)",
                                  (stream, batch)).fetchall()
                assert rows == [(2, True), (3, True)]
                rows = db.execute(
                    "SELECT version, duplicate FROM finam.append_batch(%s, %s::uuid[], %s::text[], %s::jsonb[])",
                    (stream, [new_id()], ["Fee"], [Jsonb({"amount": "0.10"})]),
                ).fetchall()
                assert rows == [(4, False)]

                # The validation and error paths still behave (the traps would change their outcome).
                assert sqlstate_of(append_event, db, stream, payload=[1, 2]) == "FC003"
                assert sqlstate_of(append_event, db, stream, expected_version=0) == "FC001"
                assert sqlstate_of(append_event, db, stream, first, payload={"amount": "9"}) == "FC002"
                with pytest.raises(psycopg.Error) as raised:
                    append_event(db, stream, expected_version=2)
                assert "expected 2, actual 4" in str(raised.value)

                versions = [r[0] for r in db.execute(
                    "SELECT version FROM finam.read_stream(%s)", (stream,))]
                assert versions == [1, 2, 3, 4]
                assert db.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0] == 4
                assert len(eventually_rows(db, "SELECT * FROM finam.read_all()", count=4)) >= 4
                assert len(eventually_rows(db, "SELECT * FROM finam.read_category('account')", count=4)) >= 4

                state = Jsonb({"cash": "0.90"})
                assert db.execute("SELECT finam.save_snapshot(%s, 4, %s)", (stream, state)).fetchone()[0] is True
                # Same version again compares states with jsonb <> (trapped if resolved to evil).
                assert db.execute("SELECT finam.save_snapshot(%s, 4, %s)", (stream, state)).fetchone()[0] is False
                assert db.execute("SELECT version FROM finam.load_snapshot(%s)", (stream,)).fetchone()[0] == 4

                # Checkpoints: names compared with text = (trapped if resolved to evil).
                checkpoint = f"hijack-{stream}"
                assert db.execute("SELECT finam.advance_checkpoint(%s, 0, %s)",
                                  (checkpoint, position)).fetchone()[0] is True
                assert db.execute("SELECT finam.load_checkpoint(%s)", (checkpoint,)).fetchone()[0] == position
                assert db.execute("SELECT finam.advance_checkpoint(%s, 0, %s)",
                                  (checkpoint, position)).fetchone()[0] is False
                assert sqlstate_of(db.execute, "SELECT finam.advance_checkpoint(%s, %s, %s)",
                                   (checkpoint, position, position)) == "FC003"
                assert db.execute("SELECT finam.is_readable(%s)", (position,)).fetchone()[0] is not None
                assert db.execute("SELECT finam.delete_checkpoint(%s)", (checkpoint,)).fetchone()[0] is True
                assert db.execute("SELECT finam.load_checkpoint(%s)", (checkpoint,)).fetchone()[0] == 0

                db.execute("SELECT finam.register_listener('hijack-test', '1 minute')")
                assert append_event(db, stream)[0] == 5  # the NOTIFY path with now() and pg_notify
                db.execute("SELECT finam.unregister_listener('hijack-test')")
            finally:
                db.execute("RESET search_path")

    assert hijack_log(db) == []
    for table in ("evil.events", "evil.snapshots", "evil.checkpoints", "pg_temp.events", "pg_temp.snapshots",
                  "pg_temp.listeners", "pg_temp.checkpoints"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert db.execute("SELECT count(*) FROM evil.listeners").fetchone()[0] == 1
    rows = db.execute(
        "SELECT stream, version, created_at > now() - interval '1 hour', category "
        "FROM finam.events ORDER BY stream, version"
    ).fetchall()
    assert rows == [(s, v, True, "account") for s in ("account-hijack", "account-hijack2") for v in range(1, 6)]
    assert db.execute("SELECT count(*) FROM finam.snapshots").fetchone()[0] == 2


# --------------------------------------------------------------------------- no way around the API

BYPASS_ATTEMPTS = {
    "draw a position": "SELECT nextval(pg_get_serial_sequence('finam.events', 'position'))",
    "rewind positions": "SELECT setval(pg_get_serial_sequence('finam.events', 'position'), 1)",
    "disable the immutability trigger": "ALTER TABLE finam.events DISABLE TRIGGER ALL",
    "drop the immutability trigger": "DROP TRIGGER events_immutable ON finam.events",
    "skip triggers for the session": "SET session_replication_role = replica",
    "take ownership of the events": "ALTER TABLE finam.events OWNER TO CURRENT_USER",
    "add a rewrite rule": "CREATE RULE rewrite AS ON INSERT TO finam.events DO INSTEAD NOTHING",
    "redefine an API function": "CREATE OR REPLACE FUNCTION finam.stream_version(stream text) RETURNS bigint "
                                "LANGUAGE sql AS $$ SELECT 0::bigint $$",
    "shadow a built-in in the schema": "CREATE FUNCTION finam.jsonb_typeof(jsonb) RETURNS text "
                                       "LANGUAGE sql AS $$ SELECT 'object' $$",
    "create a table in the schema": "CREATE TABLE finam.shadow_events (LIKE finam.events)",
    "drop an API function": "DROP FUNCTION finam.stream_version(text)",
    "loosen a function's search_path": "ALTER FUNCTION finam.stream_version(text) SET search_path = public",
    "drop the unique version index": "DROP INDEX finam.idx_events_stream_version",
}


def _store_fingerprint(db) -> dict:
    return {t: db.execute(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM finam.{t} AS t")
            .fetchone() for t in TABLES}


@pytest.mark.parametrize("role", ["finam_writer", "finam_reader"])
@pytest.mark.parametrize("attempt", list(BYPASS_ATTEMPTS))
def test_roles_cannot_get_around_the_api(db, role, attempt):
    """Neither role can draw positions, switch off the immutability trigger, or redefine the API."""
    append_event(db, "account-1")
    before = _store_fingerprint(db)
    last_position = db.execute("SELECT last_value FROM finam.events_position_seq").fetchone()[0]

    with as_role(db, role):
        assert sqlstate_of(db.execute, BYPASS_ATTEMPTS[attempt]) == "42501"

    assert _store_fingerprint(db) == before
    assert db.execute("SELECT last_value FROM finam.events_position_seq").fetchone()[0] == last_position
    assert db.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'finam.events'::regclass "
                      "AND NOT tgisinternal").fetchall() == [("events_immutable", "O")]
    assert db.execute("SELECT count(*) FROM pg_rewrite WHERE ev_class = 'finam.events'::regclass").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'finam'::regnamespace "
                      "AND proname = 'jsonb_typeof'").fetchone()[0] == 0
    assert db.execute("SELECT finam.stream_version('account-1')").fetchone()[0] == 1


@pytest.mark.parametrize("role", ["finam_writer", "finam_reader"])
def test_roles_cannot_copy_rows_into_the_events(db, role):
    append_event(db, "account-1")
    before = _store_fingerprint(db)
    with as_role(db, role):
        with pytest.raises(psycopg.Error) as raised:
            with db.cursor() as cursor, cursor.copy(
                    "COPY finam.events (id, stream, type, version, payload) FROM STDIN") as copy:
                copy.write_row((str(new_id()), "account-x", "T", 1, "{}"))
        assert raised.value.sqlstate == "42501"
    assert _store_fingerprint(db) == before


# --------------------------------------------------------------------------- advisory lock

WAITING_ON_STREAM_LOCK = """
    SELECT l.granted
    FROM pg_locks AS l
    WHERE l.locktype = 'advisory'
      AND l.pid = %s
      AND l.objsubid = 1
      AND ((l.classid::bigint << 32) | l.objid::bigint) = finam.stream_lock_key(%s)
"""


def _connect(dsn, autocommit):
    conn = psycopg.connect(dsn, autocommit=autocommit)
    configure_connection(conn)
    return conn


def test_appends_to_one_stream_wait_for_the_advisory_lock(dsn, db):
    stream, other = "account-locked", "account-free"
    with _connect(dsn, autocommit=False) as a, _connect(dsn, autocommit=True) as b, \
            _connect(dsn, autocommit=True) as c:
        assert append_event(a, stream, expected_version=0)[0] == 1  # A's transaction stays open
        assert db.execute(WAITING_ON_STREAM_LOCK, (a.info.backend_pid, stream)).fetchall() == [(True,)]

        outcome: dict = {}

        def append_from_b():
            try:
                outcome["row"] = append_event(b, stream)
            except BaseException as error:  # reported to the main thread
                outcome["error"] = error

        worker = threading.Thread(target=append_from_b, daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 10
            waiting = []
            while time.monotonic() < deadline:
                waiting = db.execute(WAITING_ON_STREAM_LOCK, (b.info.backend_pid, stream)).fetchall()
                if waiting:
                    break
                time.sleep(0.02)
            assert waiting == [(False,)], "B should wait on the stream's advisory lock"
            wait_event = db.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                                    (b.info.backend_pid,)).fetchone()
            assert wait_event == ("Lock", "advisory")
            assert worker.is_alive() and "row" not in outcome

            # Another stream is not blocked: C appends at once (a wait would hit statement_timeout).
            c.execute("SET statement_timeout = '5s'")
            started = time.monotonic()
            assert append_event(c, other, expected_version=0)[0] == 1
            assert time.monotonic() - started < 5
            assert worker.is_alive(), "B must still wait while A's transaction is open"
        finally:
            a.commit()
            worker.join(timeout=10)

        assert not worker.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["row"][0] == 2 and outcome["row"][2] is False  # after A's event, no gap
    assert [r[0] for r in db.execute("SELECT version FROM finam.read_stream(%s)", (stream,))] == [1, 2]
    assert db.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()[0] == 0


@pytest.mark.parametrize("call", [
    "SELECT * FROM finam.append_event(%s, gen_random_uuid(), 'Deposited', '{}')",
    "SELECT * FROM finam.append_events(%s, jsonb_build_array(jsonb_build_object("
    "'id', gen_random_uuid(), 'type', 'Deposited', 'payload', '{}'::jsonb)))",
    "SELECT * FROM finam.append_batch(%s, ARRAY[gen_random_uuid()], ARRAY['Deposited'], ARRAY['{}'::jsonb])",
])
def test_every_append_path_takes_the_documented_stream_lock_key(dsn, db, call):
    """The append functions spell the key out; it must be the one finam.stream_lock_key documents."""
    stream = "account-keyed"
    with _connect(dsn, autocommit=False) as a:
        a.execute(call, (stream,)).fetchall()
        assert db.execute(WAITING_ON_STREAM_LOCK, (a.info.backend_pid, stream)).fetchall() == [(True,)]
        a.rollback()


def test_lock_timeout_applies_to_the_stream_lock(dsn, db):
    stream = "account-timeout"
    with _connect(dsn, autocommit=False) as a, _connect(dsn, autocommit=True) as b:
        append_event(a, stream, expected_version=0)
        b.execute("SET lock_timeout = '200ms'")
        started = time.monotonic()
        assert sqlstate_of(append_event, b, stream) == "55P03"  # lock_not_available
        assert time.monotonic() - started < 5
        assert append_event(b, "account-other")[0] == 1
        a.rollback()
        assert append_event(b, stream, expected_version=0)[0] == 1
    assert db.execute("SELECT finam.stream_version(%s)", (stream,)).fetchone()[0] == 1


def test_stream_lock_key_is_stable_and_distinct(db):
    key_a, key_a_again, key_b = db.execute(
        "SELECT finam.stream_lock_key('account-1'), finam.stream_lock_key('account-1'), "
        "finam.stream_lock_key('account-2')"
    ).fetchone()
    assert key_a == key_a_again
    assert key_a != key_b
    # Namespaced: not the unseeded hash of the same text.
    assert key_a != db.execute("SELECT hashtextextended('account-1', 0)").fetchone()[0]
