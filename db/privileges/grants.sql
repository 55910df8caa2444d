-- Who may do what. Functions are created executable by PUBLIC: take that back
-- first, then grant each role exactly what it needs. Neither role gets INSERT,
-- UPDATE, DELETE or TRUNCATE on any table: writes go through the
-- SECURITY DEFINER functions.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA finam FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA finam FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA finam FROM finam_reader, finam_writer;

-- finam_reader: look, never touch. Every table and view of the schema (0005
-- installs this file on a fresh database before later migrations add tables,
-- which grant SELECT themselves; re-installing it covers them all).
GRANT SELECT ON ALL TABLES IN SCHEMA finam TO finam_reader;

GRANT EXECUTE ON FUNCTION
    finam.schema_version(),
    finam.category(text),
    finam.stream_lock_key(text),
    finam.assert_valid_stream(text),
    finam.assert_valid_event(text, uuid, text, jsonb, jsonb, integer),
    finam.assert_valid_expected_version(text, bigint),
    finam.raise_wrong_expected_version(text, bigint, bigint),
    finam.assert_valid_page(text, bigint, bigint, integer),
    finam.cursor_transaction(bigint),
    finam.stream_version(text),
    finam.read_stream(text, bigint, integer),
    finam.read_stream_backward(text, bigint, integer),
    finam.read_all(bigint, integer),
    finam.read_category(text, bigint, integer),
    finam.load_snapshot(text, integer),
    finam.register_listener(text, interval),
    finam.unregister_listener(text),
    finam.is_readable(bigint),
    finam.assert_valid_checkpoint_name(text),
    finam.load_checkpoint(text)
TO finam_reader;

-- finam_writer: everything finam_reader may do (it is a member) plus the writes.
GRANT EXECUTE ON FUNCTION
    finam.append_event(text, uuid, text, jsonb, bigint, jsonb),
    finam.append_events(text, jsonb, bigint),
    finam.append_batch(text, uuid[], text[], jsonb[], jsonb[], bigint),
    finam.save_snapshot(text, bigint, jsonb, integer),
    finam.advance_checkpoint(text, bigint, bigint),
    finam.delete_checkpoint(text)
TO finam_writer;
