CREATE OR REPLACE FUNCTION finam.save_snapshot(
    stream text,
    version bigint,
    state jsonb,
    schema_version integer DEFAULT 1
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    head bigint;
    stored_state jsonb;
BEGIN
    PERFORM finam.assert_valid_stream(stream);
    IF version IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: snapshot version of stream %L must not be NULL', stream);
    END IF;
    IF state IS NULL OR pg_catalog.jsonb_typeof(state) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: snapshot state of stream %L must be a JSON object, got %s',
                                        stream, coalesce(pg_catalog.jsonb_typeof(state), 'NULL'));
    END IF;
    IF schema_version IS NULL OR schema_version < 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: snapshot schema_version of stream %L must be >= 1, got %s',
                                        stream, coalesce(schema_version::text, 'NULL'));
    END IF;

    head := finam.stream_version(stream);
    IF version < 1 OR version > head THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC005',
            MESSAGE = pg_catalog.format('snapshot conflict for stream %L: version %s is outside 1..%s (the stream head)',
                                        stream, version, head);
    END IF;

    INSERT INTO finam.snapshots AS s (stream, schema_version, version, state)
    VALUES (save_snapshot.stream, save_snapshot.schema_version, save_snapshot.version, save_snapshot.state)
    ON CONFLICT ON CONSTRAINT snapshots_pkey DO UPDATE
        SET version = excluded.version,
            state = excluded.state,
            created_at = pg_catalog.now()
        WHERE s.version < excluded.version;
    IF FOUND THEN
        RETURN true;
    END IF;

    -- An older or equal version is kept as it is; the same version with other
    -- state means two folds disagree, which deterministic replay forbids.
    SELECT s.state
    INTO stored_state
    FROM finam.snapshots AS s
    WHERE s.stream = save_snapshot.stream
      AND s.schema_version = save_snapshot.schema_version
      AND s.version = save_snapshot.version;
    IF FOUND AND stored_state <> state THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC005',
            MESSAGE = pg_catalog.format(
                'snapshot conflict for stream %L: version %s (schema %s) is already stored with a different state',
                stream, version, schema_version);
    END IF;
    RETURN false;
END;
$function$;

COMMENT ON FUNCTION finam.save_snapshot(text, bigint, jsonb, integer) IS
    'Stores the state of a stream folded up to version, for state layout schema_version. '
    'Returns true if stored, false if a snapshot at the same or a newer version is kept instead. '
    'FC005: version below 1 or beyond the stream head, or the same version already stored with a different state. '
    'FC003: NULL/empty stream, NULL version, non-object state, schema_version < 1.';
