CREATE OR REPLACE FUNCTION finam.append_events(
    stream text,
    events jsonb,
    expected_version bigint DEFAULT NULL
)
RETURNS TABLE (id uuid, version bigint, "position" bigint, duplicate boolean)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    event jsonb;
    ordinal integer := 0;
    ids uuid[];
    types text[];
    payloads jsonb[];
    metadata jsonb[];
BEGIN
    IF events IS NULL OR pg_catalog.jsonb_typeof(events) <> 'array' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: malformed batch for stream %L: events must be a JSON array, got %s',
                                        stream, coalesce(pg_catalog.jsonb_typeof(events), 'NULL'));
    END IF;

    -- One set-based pass over the element rules; only a malformed batch is
    -- walked element by element for the precise error.
    IF EXISTS (
        SELECT
        FROM pg_catalog.jsonb_array_elements(events) AS a(event)
        WHERE CASE
                  WHEN pg_catalog.jsonb_typeof(a.event) <> 'object' THEN true
                  ELSE (a.event - ARRAY['id', 'type', 'payload', 'metadata']) <> '{}'::jsonb
                       OR pg_catalog.jsonb_typeof(a.event -> 'id') IS DISTINCT FROM 'string'
                       OR (a.event ->> 'id') !~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$'
                       OR pg_catalog.jsonb_typeof(a.event -> 'type') IS DISTINCT FROM 'string'
              END
    ) THEN
        FOR event IN SELECT a.value FROM pg_catalog.jsonb_array_elements(events) AS a(value) LOOP
            ordinal := ordinal + 1;
            IF pg_catalog.jsonb_typeof(event) <> 'object' THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'FC003',
                    MESSAGE = pg_catalog.format('invalid argument: malformed batch for stream %L: element %s is not a JSON object',
                                                stream, ordinal);
            END IF;
            IF EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(event) AS k(key)
                       WHERE k.key NOT IN ('id', 'type', 'payload', 'metadata')) THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'FC003',
                    MESSAGE = pg_catalog.format(
                        'invalid argument: malformed batch for stream %L: element %s has keys other than id, type, payload, metadata',
                        stream, ordinal);
            END IF;
            IF pg_catalog.jsonb_typeof(event -> 'id') IS DISTINCT FROM 'string'
               OR (event ->> 'id') !~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'FC003',
                    MESSAGE = pg_catalog.format('invalid argument: malformed batch for stream %L: element %s has no valid UUID "id"',
                                                stream, ordinal);
            END IF;
            IF pg_catalog.jsonb_typeof(event -> 'type') IS DISTINCT FROM 'string' THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'FC003',
                    MESSAGE = pg_catalog.format('invalid argument: malformed batch for stream %L: element %s has no string "type"',
                                                stream, ordinal);
            END IF;
        END LOOP;
    END IF;

    SELECT pg_catalog.array_agg((a.event ->> 'id')::uuid ORDER BY a.ordinal),
           pg_catalog.array_agg(a.event ->> 'type' ORDER BY a.ordinal),
           pg_catalog.array_agg(a.event -> 'payload' ORDER BY a.ordinal),
           pg_catalog.array_agg(coalesce(a.event -> 'metadata', '{}'::jsonb) ORDER BY a.ordinal)
    INTO ids, types, payloads, metadata
    FROM pg_catalog.jsonb_array_elements(events) WITH ORDINALITY AS a(event, ordinal);

    RETURN QUERY
        SELECT a.id, a.version, a.position, a.duplicate
        FROM finam.append_batch(stream, ids, types, payloads, metadata, expected_version) AS a;
END;
$function$;

COMMENT ON FUNCTION finam.append_events(text, jsonb, bigint) IS
    'Appends a JSON array of events [{"id", "type", "payload", "metadata"?}, ...] to one stream, all or nothing, '
    'at consecutive versions; returns one row per event in array order. '
    'A retry of the whole batch returns the stored rows with duplicate = true; a partial overlap with stored ids is FC002. '
    'FC001 wrong expected version, FC003 malformed batch or invalid argument.';
