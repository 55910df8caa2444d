CREATE OR REPLACE FUNCTION finam.assert_valid_stream(stream text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    IF stream IS NULL OR stream = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = 'invalid argument: stream must be a non-empty text';
    END IF;
    IF pg_catalog.length(stream) > 512 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: stream name is %s characters long, the limit is 512 (starts with %L)',
                pg_catalog.length(stream), pg_catalog.left(stream, 40));
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.assert_valid_stream(text) IS
    'Raises FC003 unless the stream name is a non-empty text of at most 512 characters.';
