CREATE OR REPLACE VIEW finam.category_summary AS
    SELECT e.category,
           pg_catalog.count(DISTINCT e.stream) AS stream_count,
           pg_catalog.count(*) AS event_count,
           pg_catalog.max(e.created_at) AS last_event_at
    FROM finam.events AS e
    GROUP BY e.category;

COMMENT ON VIEW finam.category_summary IS
    'Per category: number of streams and events, and the time of the last event (scans every event).';
