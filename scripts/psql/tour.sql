-- Finam Core: a tour for DBAs, in psql. Documentation that runs.
--
--   psql "$POSTGRES_DSN" -X -v ON_ERROR_STOP=1 -f scripts/psql/tour.sql
--
-- Needs a migrated database (`finam migrate`) and a role that may append (finam_writer or the
-- owner). It writes a few sample events to the streams tour-1 and tour-2 with fixed ids, so
-- running it again writes nothing (the appends come back with duplicate = t). It leaves no
-- listener registration and no lock behind. Every object it mentions is described in db/API.md.

\set QUIET on
\pset null '(null)'
\pset format wrapped
\pset columns 120
\set QUIET off

\echo
\echo '=== 1. What is installed'
\echo 'One schema, finam. finam.schema_version() is the API version; every table, view and function'
\echo 'carries a COMMENT, so \\d+ and \\df+ explain it (try \\d+ finam.events, \\df+ finam.append_event).'

SELECT finam.schema_version() AS api_version;

\dt+ finam.*
\dv finam.*

\echo 'The functions a client calls, with their COMMENT (what \\df+ shows as Description):'
\x on
SELECT p.proname AS function,
       pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
       pg_catalog.pg_get_function_result(p.oid) AS returns,
       pg_catalog.obj_description(p.oid, 'pg_proc') AS comment
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'finam'::regnamespace
  AND p.proname IN ('append_event', 'append_events', 'read_stream', 'read_all', 'register_listener')
ORDER BY p.proname;
\x off

\echo
\echo '=== 2. Sample events (idempotent: a rerun returns the stored rows with duplicate = t)'
\echo 'append_event with named arguments; expected_version => 0 means "this stream must be new".'

SELECT *
FROM finam.append_event(
    stream => 'tour-1',
    id => '70a70000-0000-4000-8000-000000000001',
    type => 'CashDeposited',
    payload => '{"currency": "USD", "amount": "100000.00"}',
    expected_version => 0);

\echo 'append_events: a JSON array, all or nothing, right after version 1.'

SELECT *
FROM finam.append_events(
    stream => 'tour-1',
    events => '[
      {"id": "70a70000-0000-4000-8000-000000000002", "type": "StrategySignalEvent",
       "payload": {"instrument": "AAPL", "side": "BUY", "quantity": "10"}},
      {"id": "70a70000-0000-4000-8000-000000000003", "type": "OrderRequested",
       "payload": {"instrument": "AAPL", "side": "BUY", "quantity": "10", "limit_price": "187.25"},
       "metadata": {"causation_id": "70a70000-0000-4000-8000-000000000002"}}
    ]',
    expected_version => 1);

SELECT *
FROM finam.append_event(
    stream => 'tour-2',
    id => '70a70000-0000-4000-8000-000000000011',
    type => 'CashDeposited',
    payload => '{"currency": "EUR", "amount": "25000.00"}',
    expected_version => 0);

\echo
\echo '=== 3. Streams, categories and event types'
\echo 'finam.streams: one row per stream (one index probe each; cheap). The category is the part of'
\echo 'the stream name before the first "-".'

SELECT stream, category, version, last_position, last_type, last_event_at
FROM finam.streams
ORDER BY stream
LIMIT 20;

\echo 'finam.category_summary and finam.type_summary scan every event: fine here, slow on a big store.'

SELECT category, stream_count, event_count, last_event_at
FROM finam.category_summary
ORDER BY category;

SELECT type, stream_count, event_count, last_event_at
FROM finam.type_summary
ORDER BY type;

\echo
\echo '=== 4. One stream''s history: finam.read_stream'
\echo 'Versions 1, 2, 3, ... without gaps; positions are global (unique, not commit order).'

SELECT version, position, type, payload, metadata
FROM finam.read_stream(stream => 'tour-1', from_version => 1, max_count => 100);

\echo
\echo '=== 5. A version conflict: SQLSTATE FC001'
\echo 'A writer states the version it decided on. tour-1 is past version 1, so this append fails with'
\echo 'FC001 and writes nothing. DETAIL is JSON {"stream", "expected", "actual"}: a client re-reads the'
\echo 'stream from the actual version, decides again and retries with expected_version => actual.'
\echo 'The DO block catches the error so the tour goes on (psql would stop here with ON_ERROR_STOP).'

DO $tour$
DECLARE
    message text;
    detail text;
    hint text;
BEGIN
    PERFORM *
    FROM finam.append_event(
        stream => 'tour-1',
        id => '70a70000-0000-4000-8000-0000000000ff',
        type => 'OrderRequested',
        payload => '{"instrument": "MSFT", "side": "SELL", "quantity": "5"}',
        expected_version => 1);
    RAISE EXCEPTION 'expected FC001, the append succeeded';
EXCEPTION
    WHEN SQLSTATE 'FC001' THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
        RAISE NOTICE 'FC001 caught: %', message;
        RAISE NOTICE 'FC001 detail: %', detail;
        RAISE NOTICE 'FC001 hint: %', hint;
END
$tour$;

SELECT finam.stream_version('tour-1') AS "tour-1 is still at version";

\echo
\echo '=== 6. Idempotent retry'
\echo 'The reply to an append was lost and the client sends it again, same id, same content: it gets'
\echo 'the stored version and position back with duplicate = t, and nothing is written, even though'
\echo 'its expected_version (0) is stale by now. Event ids are the idempotency key.'

SELECT *
FROM finam.append_event(
    stream => 'tour-1',
    id => '70a70000-0000-4000-8000-000000000001',
    type => 'CashDeposited',
    payload => '{"currency": "USD", "amount": "100000.00"}',
    expected_version => 0);

\echo 'The same id with other content is not a retry: SQLSTATE FC002.'

DO $tour$
BEGIN
    PERFORM *
    FROM finam.append_event(
        stream => 'tour-1',
        id => '70a70000-0000-4000-8000-000000000001',
        type => 'CashDeposited',
        payload => '{"currency": "USD", "amount": "999.00"}');
    RAISE EXCEPTION 'expected FC002, the append succeeded';
EXCEPTION
    WHEN SQLSTATE 'FC002' THEN
        RAISE NOTICE 'FC002 caught: %', SQLERRM;
END
$tour$;

\echo
\echo '=== 7. Roles: who may do what'
\echo 'Two NOLOGIN roles; grant them to login roles (GRANT finam_writer TO trading_engine;).'
\echo 'finam_writer is a member of finam_reader. Neither may INSERT, UPDATE or DELETE a table: writes'
\echo 'go through the SECURITY DEFINER functions. EXECUTE is revoked from PUBLIC on every function.'

SELECT r.rolname AS role,
       r.rolcanlogin AS can_login,
       pg_catalog.pg_has_role(r.oid, 'finam_reader', 'MEMBER') AS member_of_reader,
       pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment
FROM pg_catalog.pg_roles AS r
WHERE r.rolname IN ('finam_reader', 'finam_writer')
ORDER BY r.rolname;

\echo 'Which roles hold them (directly):'

SELECT g.rolname AS granted_role, m.rolname AS member
FROM pg_catalog.pg_auth_members AS am
JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
WHERE g.rolname IN ('finam_reader', 'finam_writer')
ORDER BY g.rolname, m.rolname;

\echo 'Tables and views: the privileges each role holds.'

SELECT c.oid::regclass AS relation,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' ELSE c.relkind::text END AS kind,
       (SELECT coalesce(pg_catalog.string_agg(u.privilege, ',' ORDER BY u.n), '-')
        FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY AS u (privilege, n)
        WHERE pg_catalog.has_table_privilege('finam_reader', c.oid, u.privilege)) AS finam_reader,
       (SELECT coalesce(pg_catalog.string_agg(u.privilege, ',' ORDER BY u.n), '-')
        FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY AS u (privilege, n)
        WHERE pg_catalog.has_table_privilege('finam_writer', c.oid, u.privilege)) AS finam_writer
FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = 'finam'::regnamespace
  AND c.relkind IN ('r', 'v')
ORDER BY c.relkind, c.relname;

\echo 'Functions: EXECUTE per role (security_definer = runs with the rights of the migrating role).'

SELECT p.oid::regprocedure AS function,
       pg_catalog.has_function_privilege('finam_reader', p.oid, 'EXECUTE') AS finam_reader,
       pg_catalog.has_function_privilege('finam_writer', p.oid, 'EXECUTE') AS finam_writer,
       pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       p.prosecdef AS security_definer
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'finam'::regnamespace
ORDER BY p.proname;

\echo
\echo '=== 8. What a listener costs'
\echo 'NOTIFY takes a global lock at commit: sent on every append, it serializes all committers.'
\echo 'Measured with pgbench (8 clients, append_event on 1000 streams, PostgreSQL 15, 2 cores):'
\echo '7,600 appends/s with no listener registered, 3,800 appends/s with one.'
\echo 'So appends send NOTIFY finam_events (payload: the stream name) only while a registration in'
\echo 'finam.listeners is alive. Subscribers register with a ttl and renew; a crashed one stops'
\echo 'costing writers when its ttl lapses. Notifications are a hint: readers poll read_all anyway.'
\echo 'Registrations now (expect none while no subscriber runs):'

SELECT name, registered_at, expires_at, expires_at > now() AS alive
FROM finam.listeners
ORDER BY name;

\echo 'A subscriber registers (or renews) and then runs LISTEN finam_events on its connection:'

SELECT finam.register_listener(name => 'psql-tour', ttl => '30 seconds') AS registered_until;

SELECT name, expires_at > now() AS alive
FROM finam.listeners
WHERE name = 'psql-tour';

\echo 'and removes itself when it stops (true = it was registered):'

SELECT finam.unregister_listener(name => 'psql-tour') AS unregistered;

\echo
\echo '=== 9. Finding a waiting writer: pg_locks and finam.stream_lock_key(stream)'
\echo 'Writers of one stream queue on a transaction-level advisory lock whose 64-bit key is'
\echo 'finam.stream_lock_key(stream); pg_locks shows it split into classid (high 32 bits) and objid'
\echo '(low 32 bits). granted = f is a writer waiting for the one with granted = t to commit.'
\echo 'Here this session takes the lock of tour-1 itself, so the query has something to show.'

SELECT finam.stream_lock_key('tour-1') AS "lock key of tour-1";

BEGIN;
SELECT 'held until ROLLBACK' AS "lock of tour-1"
FROM pg_catalog.pg_advisory_xact_lock(finam.stream_lock_key('tour-1'));

SELECT l.pid,
       l.granted,
       l.pid = pg_catalog.pg_backend_pid() AS this_session,
       a.state,
       a.wait_event_type,
       pg_catalog.now() - a.xact_start AS transaction_age,
       pg_catalog.left(pg_catalog.regexp_replace(a.query, '\s+', ' ', 'g'), 40) AS query
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())
  AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = finam.stream_lock_key('tour-1')
ORDER BY l.granted DESC, a.xact_start;

ROLLBACK;

\echo 'To see every stream somebody waits for, without knowing its name, list the advisory locks'
\echo 'with granted = f and compare their key with finam.stream_lock_key(stream) of the streams in'
\echo 'finam.streams. A long transaction holding the lock also delays read_all for every reader.'

\echo
\echo '=== End of the tour. More: db/API.md, \\df+ finam.*, \\d+ finam.events'
