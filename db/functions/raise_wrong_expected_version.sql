CREATE OR REPLACE FUNCTION finam.raise_wrong_expected_version(stream text, expected bigint, actual bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'FC001',
        MESSAGE = pg_catalog.format('wrong expected version for stream %L: expected %s, actual %s',
                                    stream, expected, actual),
        DETAIL = pg_catalog.json_build_object('stream', stream, 'expected', expected, 'actual', actual)::text,
        HINT = 'Read the stream from the actual version, decide again, and retry with the new expected version.';
END;
$function$;

COMMENT ON FUNCTION finam.raise_wrong_expected_version(text, bigint, bigint) IS
    'Raises FC001 for a stream whose version is not the expected one; DETAIL carries '
    '{"stream", "expected", "actual"} as JSON for clients.';
