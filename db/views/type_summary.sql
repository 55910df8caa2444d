CREATE OR REPLACE VIEW finam.type_summary AS
    SELECT e.type,
           pg_catalog.count(DISTINCT e.stream) AS stream_count,
           pg_catalog.count(*) AS event_count,
           pg_catalog.max(e.created_at) AS last_event_at
    FROM finam.events AS e
    GROUP BY e.type;

COMMENT ON VIEW finam.type_summary IS
    'Per event type: number of streams using it and of events, and the time of the last one (scans every event).';
