CREATE OR REPLACE FUNCTION finam.append_batch(
    stream text,
    ids uuid[],
    types text[],
    payloads jsonb[],
    metadata jsonb[] DEFAULT NULL,
    expected_version bigint DEFAULT NULL
)
RETURNS TABLE (id uuid, version bigint, "position" bigint, duplicate boolean)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    batch_size integer;
    i integer;
    stored_count integer;
    matching_count integer;
    conflicting_id uuid;
    current_version bigint;
    inserted_count integer;
    event_id uuid;
    event_type text;
    event_payload jsonb;
    event_metadata jsonb;
BEGIN
    -- 1. Validate every argument before touching anything (FC003).
    PERFORM finam.assert_valid_stream(stream);
    batch_size := coalesce(pg_catalog.cardinality(ids), 0);
    IF batch_size = 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: empty batch for stream %L', stream);
    END IF;
    IF pg_catalog.array_ndims(ids) <> 1
       OR coalesce(pg_catalog.cardinality(types), -1) <> batch_size
       OR coalesce(pg_catalog.cardinality(payloads), -1) <> batch_size
       OR coalesce(pg_catalog.array_ndims(types), 1) <> 1
       OR coalesce(pg_catalog.array_ndims(payloads), 1) <> 1
       OR (metadata IS NOT NULL AND (pg_catalog.cardinality(metadata) <> batch_size
                                     OR pg_catalog.array_ndims(metadata) <> 1)) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: malformed batch for stream %L: ids, types, payloads (and metadata) '
                'must be one-dimensional arrays of the same length', stream);
    END IF;
    PERFORM finam.assert_valid_expected_version(stream, expected_version);
    -- One set-based pass over assert_valid_event's rules; only a failing batch
    -- is walked event by event for the precise error. Both go by position in the
    -- arrays (unnest), as the insert does, so arrays whose subscripts do not start
    -- at 1 ('[0:1]={...}') are read, and reported, the same way.
    IF EXISTS (
        SELECT
        FROM unnest(ids, types, payloads, metadata) AS b(id, type, payload, meta)
        WHERE b.id IS NULL
           OR b.type IS NULL OR b.type = '' OR pg_catalog.length(b.type) > 256
           OR b.payload IS NULL OR pg_catalog.jsonb_typeof(b.payload) <> 'object'
           OR (b.meta IS NOT NULL AND pg_catalog.jsonb_typeof(b.meta) <> 'object')
           OR pg_catalog.pg_column_size(b.payload) + coalesce(pg_catalog.pg_column_size(b.meta), 0) > 1048576
    ) THEN
        FOR i, event_id, event_type, event_payload, event_metadata IN
            SELECT b.ord, b.id, b.type, b.payload, b.meta
            FROM unnest(ids, types, payloads, metadata) WITH ORDINALITY AS b(id, type, payload, meta, ord)
            ORDER BY b.ord
        LOOP
            PERFORM finam.assert_valid_event(stream, event_id, event_type, event_payload, event_metadata, i);
        END LOOP;
    END IF;
    IF batch_size > 1 AND (SELECT pg_catalog.count(DISTINCT u.id) FROM pg_catalog.unnest(ids) AS u(id)) <> batch_size THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: malformed batch for stream %L: an event id appears twice',
                                        stream);
    END IF;

    -- 2. Serialize the writers of this stream until commit.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(stream, 440410599789));  -- finam.stream_lock_key(stream)

    -- 3. Idempotency: ids already stored are a retry (same content) or a conflict (FC002).
    SELECT pg_catalog.count(*)::integer,
           (pg_catalog.count(*) FILTER (WHERE e.stream = append_batch.stream
                                          AND e.type = b.type
                                          AND e.payload = b.payload))::integer,
           (pg_catalog.array_agg(e.id ORDER BY b.ord) FILTER (WHERE e.stream <> append_batch.stream
                                                               OR e.type <> b.type
                                                               OR e.payload <> b.payload))[1]
    INTO stored_count, matching_count, conflicting_id
    FROM unnest(ids, types, payloads) WITH ORDINALITY AS b(id, type, payload, ord)
    JOIN finam.events AS e ON e.id = b.id;

    IF stored_count > 0 THEN
        IF stored_count = batch_size AND matching_count = batch_size THEN
            RETURN QUERY
                SELECT e.id, e.version, e.position, true
                FROM pg_catalog.unnest(ids) WITH ORDINALITY AS b(id, ord)
                JOIN finam.events AS e ON e.id = b.id
                ORDER BY b.ord;
            RETURN;
        END IF;
        IF conflicting_id IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'FC002',
                MESSAGE = pg_catalog.format(
                    'event id %s is already stored with different content (stream, type or payload) than this append to stream %L',
                    conflicting_id, stream);
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'FC002',
            MESSAGE = pg_catalog.format(
                'batch for stream %L overlaps a stored batch: %s of its %s event ids are already stored',
                stream, stored_count, batch_size);
    END IF;

    -- 4. Optimistic concurrency (FC001).
    current_version := finam.stream_version(stream);
    IF expected_version IS NOT NULL AND expected_version <> current_version THEN
        PERFORM finam.raise_wrong_expected_version(stream, expected_version, current_version);
    END IF;

    -- 5. Insert; positions are drawn only now, in batch order.
    RETURN QUERY
        WITH inserted AS (
            INSERT INTO finam.events AS e (id, stream, type, version, payload, metadata)
            SELECT b.id, append_batch.stream, b.type, current_version + b.ord, b.payload, coalesce(b.meta, '{}'::jsonb)
            FROM unnest(ids, types, payloads, metadata) WITH ORDINALITY AS b(id, type, payload, meta, ord)
            ORDER BY b.ord
            ON CONFLICT ON CONSTRAINT events_pkey DO NOTHING
            RETURNING e.id, e.version, e.position
        )
        SELECT n.id, n.version, n.position, false
        FROM inserted AS n
        ORDER BY n.version;
    GET DIAGNOSTICS inserted_count = ROW_COUNT;

    IF inserted_count <> batch_size THEN
        -- A concurrent transaction stored one of these ids in another stream
        -- between step 3 and step 5. Raising undoes this call's inserts.
        RAISE EXCEPTION USING
            ERRCODE = 'FC002',
            MESSAGE = pg_catalog.format(
                'an event id of this append to stream %L was stored concurrently with different content', stream);
    END IF;

    -- 6. Wake-up hint, only while someone listens (NOTIFY serializes commits).
    IF EXISTS (SELECT FROM finam.listeners AS l WHERE l.expires_at > pg_catalog.now()) THEN
        PERFORM pg_catalog.pg_notify('finam_events', stream);
    END IF;

    -- 7. Durability: this transaction's commit waits for its WAL flush even in a session with
    --    synchronous_commit = off (an acknowledged append must survive a crash). Other values
    --    (local, remote_write, remote_apply) are the DBA's and are kept.
    IF pg_catalog.current_setting('synchronous_commit') = 'off' THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.append_batch(text, uuid[], text[], jsonb[], jsonb[], bigint) IS
    'Appends events to one stream, all or nothing: the core of append_event and append_events, and the fast path '
    'for clients that bind arrays (ids[i], types[i], payloads[i], metadata[i] describe event i). '
    'Locks the stream (advisory, until commit), replays a whole-batch retry as duplicate = true, '
    'checks expected_version (NULL = no check), then inserts at versions head+1.. '
    'Errors: FC001 wrong expected version, FC002 id stored with other content or partial overlap, FC003 invalid argument.';
