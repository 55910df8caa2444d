CREATE OR REPLACE FUNCTION finam.read_stream(
    stream text,
    from_version bigint DEFAULT 1,
    max_count integer DEFAULT 1000
)
RETURNS SETOF finam.events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    PERFORM finam.assert_valid_stream(stream);
    PERFORM finam.assert_valid_page('from_version', from_version, 1, max_count);

    RETURN QUERY
        SELECT e.*
        FROM finam.events AS e
        WHERE e.stream = read_stream.stream
          AND e.version >= from_version
        ORDER BY e.version
        LIMIT max_count;
END;
$function$;

COMMENT ON FUNCTION finam.read_stream(text, bigint, integer) IS
    'Events of one stream with version >= from_version, in version order, at most max_count rows. '
    'FC003 for a NULL/empty stream, from_version < 1 or max_count < 1.';
