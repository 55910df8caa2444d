CREATE OR REPLACE FUNCTION finam.load_snapshot(
    stream text,
    schema_version integer DEFAULT NULL
)
RETURNS TABLE (version bigint, state jsonb, state_schema_version integer, created_at timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    PERFORM finam.assert_valid_stream(stream);
    IF schema_version < 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: snapshot schema_version of stream %L must be NULL (any layout) or >= 1, got %s',
                stream, schema_version);
    END IF;

    RETURN QUERY
        SELECT s.version, s.state, s.schema_version, s.created_at
        FROM finam.snapshots AS s
        WHERE s.stream = load_snapshot.stream
          AND (load_snapshot.schema_version IS NULL OR s.schema_version = load_snapshot.schema_version)
        ORDER BY s.version DESC, s.schema_version DESC
        LIMIT 1;
END;
$function$;

COMMENT ON FUNCTION finam.load_snapshot(text, integer) IS
    'The snapshot of a stream for state layout schema_version (NULL = the newest of any layout): '
    'zero rows or one row (version, state, state_schema_version, created_at). '
    'FC003 for an invalid stream (see assert_valid_stream) or schema_version < 1.';
