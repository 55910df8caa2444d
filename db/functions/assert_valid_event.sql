CREATE OR REPLACE FUNCTION finam.assert_valid_event(
    stream text,
    id uuid,
    type text,
    payload jsonb,
    metadata jsonb,
    ordinal integer DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    event_label text;
BEGIN
    PERFORM finam.assert_valid_stream(stream);
    event_label := CASE WHEN ordinal IS NULL THEN 'event ' ELSE pg_catalog.format('event #%s ', ordinal) END
                   || coalesce(id::text, '(no id)');
    IF id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: %s for stream %L: id must not be NULL', event_label, stream);
    END IF;
    IF type IS NULL OR type = '' OR pg_catalog.length(type) > 256 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: %s for stream %L: type must be a non-empty text of at most 256 characters',
                event_label, stream);
    END IF;
    IF payload IS NULL OR pg_catalog.jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: %s for stream %L: payload must be a JSON object, got %s',
                                        event_label, stream, coalesce(pg_catalog.jsonb_typeof(payload), 'NULL'));
    END IF;
    IF metadata IS NOT NULL AND pg_catalog.jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: %s for stream %L: metadata must be a JSON object, got %s',
                                        event_label, stream, pg_catalog.jsonb_typeof(metadata));
    END IF;
    IF pg_catalog.pg_column_size(payload) + coalesce(pg_catalog.pg_column_size(metadata), 0) > 1048576 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: %s for stream %L: payload and metadata take %s bytes, the limit is 1048576',
                event_label, stream,
                pg_catalog.pg_column_size(payload) + coalesce(pg_catalog.pg_column_size(metadata), 0));
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.assert_valid_event(text, uuid, text, jsonb, jsonb, integer) IS
    'Raises FC003 unless the stream name is valid (see assert_valid_stream), id is not NULL, type is a non-empty text '
    'of at most 256 characters, payload is a JSON object, metadata is NULL or a JSON object, and together they take '
    'at most 1 MiB. ordinal numbers the event in its batch for the message.';
