-- Finam Core 0001: the finam schema and the two client roles.
--
-- Roles are cluster-wide, so they are created only when missing: this migration
-- works on a server where another database already installed Finam Core, and
-- its rollback leaves the roles in place (other databases may use them).

CREATE SCHEMA finam;

COMMENT ON SCHEMA finam IS
    'Finam Core event store: append-only event streams, snapshots and listener registrations. '
    'Use the functions (append_event, append_events, read_stream, read_all, ...); '
    'see db/API.md for the contract and the FC0xx SQLSTATEs.';

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'finam_reader') THEN
        CREATE ROLE finam_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'finam_writer') THEN
        CREATE ROLE finam_writer NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('finam_writer', 'finam_reader', 'MEMBER') THEN
        GRANT finam_reader TO finam_writer;
    END IF;
END
$roles$;

COMMENT ON ROLE finam_reader IS
    'Finam Core: may read events, snapshots and summaries (SELECT and the read functions) and register itself '
    'as a listener; never writes events or snapshots.';

COMMENT ON ROLE finam_writer IS
    'Finam Core: everything finam_reader may do, plus append_event(s) and save_snapshot; '
    'no direct INSERT, UPDATE or DELETE on any table.';

REVOKE ALL ON SCHEMA finam FROM PUBLIC;

GRANT USAGE ON SCHEMA finam TO finam_reader, finam_writer;
