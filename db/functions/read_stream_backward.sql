CREATE OR REPLACE FUNCTION finam.read_stream_backward(
    stream text,
    from_version bigint DEFAULT NULL,
    max_count integer DEFAULT 1000
)
RETURNS SETOF finam.events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    PERFORM finam.assert_valid_stream(stream);
    PERFORM finam.assert_valid_page('from_version', coalesce(from_version, 1), 1, max_count);

    RETURN QUERY
        SELECT e.*
        FROM finam.events AS e
        WHERE e.stream = read_stream_backward.stream
          AND (from_version IS NULL OR e.version <= from_version)
        ORDER BY e.version DESC
        LIMIT max_count;
END;
$function$;

COMMENT ON FUNCTION finam.read_stream_backward(text, bigint, integer) IS
    'Events of one stream with version <= from_version (NULL = from the head), newest first, at most max_count rows. '
    'FC003 for a NULL/empty stream, from_version < 1 or max_count < 1.';
