CREATE OR REPLACE FUNCTION finam.append_event(
    stream text,
    id uuid,
    type text,
    payload jsonb,
    expected_version bigint DEFAULT NULL,
    metadata jsonb DEFAULT '{}'::jsonb
)
RETURNS TABLE (version bigint, "position" bigint, duplicate boolean)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    current_version bigint;
    stored finam.events%ROWTYPE;
BEGIN
    -- 1. Validate (FC003) before touching anything. The condition is the fast
    --    path of assert_valid_event's rules; those helpers raise the precise error.
    IF stream IS NULL OR stream = '' OR pg_catalog.length(stream) > 512
       OR id IS NULL
       OR type IS NULL OR type = '' OR pg_catalog.length(type) > 256
       OR payload IS NULL OR pg_catalog.jsonb_typeof(payload) <> 'object'
       OR (metadata IS NOT NULL AND pg_catalog.jsonb_typeof(metadata) <> 'object')
       OR pg_catalog.pg_column_size(payload) + coalesce(pg_catalog.pg_column_size(metadata), 0) > 1048576
       OR expected_version < 0 THEN
        PERFORM finam.assert_valid_event(stream, id, type, payload, metadata);
        PERFORM finam.assert_valid_expected_version(stream, expected_version);
    END IF;

    -- 2. Serialize the writers of this stream until commit (the key is
    --    finam.stream_lock_key(stream), spelled out to spare a call).
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(stream, 440410599789));

    -- 3. Idempotency first: a stored id is a retry (same content) or a clash (FC002),
    --    whatever the expected version says; no position is drawn for it.
    SELECT e.* INTO stored FROM finam.events AS e WHERE e.id = append_event.id;
    IF NOT FOUND THEN
        -- 4. Optimistic concurrency (FC001). The head is finam.stream_version(stream),
        --    spelled out to spare a call on the single-event hot path.
        SELECT e.version
        INTO current_version
        FROM finam.events AS e
        WHERE e.stream = append_event.stream
        ORDER BY e.version DESC
        LIMIT 1;
        current_version := coalesce(current_version, 0);
        IF expected_version IS NOT NULL AND expected_version <> current_version THEN
            PERFORM finam.raise_wrong_expected_version(stream, expected_version, current_version);
        END IF;

        -- 5. Insert; the position is drawn only now. ON CONFLICT covers a writer
        --    of another stream storing the same id since step 3.
        INSERT INTO finam.events AS e (id, stream, type, version, payload, metadata)
        VALUES (append_event.id, append_event.stream, append_event.type, current_version + 1,
                append_event.payload, coalesce(append_event.metadata, '{}'::jsonb))
        ON CONFLICT ON CONSTRAINT events_pkey DO NOTHING
        RETURNING e.version, e.position INTO version, position;
        IF FOUND THEN
            duplicate := false;
            -- Wake-up hint, only while someone listens (NOTIFY serializes commits).
            IF EXISTS (SELECT FROM finam.listeners AS l WHERE l.expires_at > pg_catalog.now()) THEN
                PERFORM pg_catalog.pg_notify('finam_events', stream);
            END IF;
            RETURN NEXT;
            RETURN;
        END IF;
        SELECT e.* INTO stored FROM finam.events AS e WHERE e.id = append_event.id;
    END IF;

    -- 6. Idempotency: the same content is the original append; anything else is FC002.
    IF stored.stream = append_event.stream AND stored.type = append_event.type AND stored.payload = append_event.payload THEN
        version := stored.version;
        position := stored.position;
        duplicate := true;
        RETURN NEXT;
        RETURN;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'FC002',
        MESSAGE = pg_catalog.format(
            'event id %s is already stored in stream %L as %s version %s; this append to stream %L differs in stream, type or payload',
            id, stored.stream, stored.type, stored.version, stream);
END;
$function$;

COMMENT ON FUNCTION finam.append_event(text, uuid, text, jsonb, bigint, jsonb) IS
    'Appends one event to a stream and returns its version and global position. '
    'expected_version NULL = no check, n >= 0 = the stream must be at version n (FC001 otherwise). '
    'An id already stored with the same stream, type and payload returns the stored version and position with '
    'duplicate = true and writes nothing, even if expected_version is stale; with other content it is FC002. '
    'FC003: NULL/empty stream, id or type, non-object payload or metadata, negative expected_version. '
    'Holds the stream''s advisory lock until commit.';
