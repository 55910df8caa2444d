CREATE OR REPLACE FUNCTION finam.stream_version(stream text)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    head bigint;
BEGIN
    IF stream IS NULL OR stream = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = 'invalid argument: stream must be a non-empty text';
    END IF;

    SELECT e.version
    INTO head
    FROM finam.events AS e
    WHERE e.stream = stream_version.stream
    ORDER BY e.version DESC
    LIMIT 1;

    RETURN coalesce(head, 0);
END;
$function$;

COMMENT ON FUNCTION finam.stream_version(text) IS
    'Current version of a stream: the version of its last event, 0 for an empty stream. Raises FC003 for a NULL or empty name.';
