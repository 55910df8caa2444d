CREATE OR REPLACE VIEW finam.streams AS
    -- Loose index scan over idx_events_stream_version: one probe per stream,
    -- not a scan of every event.
    WITH RECURSIVE names (stream) AS (
        (
            SELECT e.stream
            FROM finam.events AS e
            ORDER BY e.stream
            LIMIT 1
        )
        UNION ALL
        SELECT (
            SELECT e.stream
            FROM finam.events AS e
            WHERE e.stream > n.stream
            ORDER BY e.stream
            LIMIT 1
        )
        FROM names AS n
        WHERE n.stream IS NOT NULL
    )
    SELECT n.stream,
           pg_catalog.split_part(n.stream, '-', 1) AS category,
           head.version,
           head.position AS last_position,
           head.type AS last_type,
           head.created_at AS last_event_at
    FROM names AS n
    CROSS JOIN LATERAL (
        SELECT e.version, e.position, e.type, e.created_at
        FROM finam.events AS e
        WHERE e.stream = n.stream
        ORDER BY e.version DESC
        LIMIT 1
    ) AS head
    WHERE n.stream IS NOT NULL;

COMMENT ON VIEW finam.streams IS
    'One row per stream: its category, current version, and the position, type and time of its last event.';
