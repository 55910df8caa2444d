CREATE OR REPLACE FUNCTION finam.read_all(
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000
)
RETURNS SETOF finam.events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    after_transaction xid8;
    visible_before xid8;
BEGIN
    PERFORM finam.assert_valid_page('after_position', after_position, 0, max_count);

    after_transaction := finam.cursor_transaction(after_position);

    -- Every transaction older than this snapshot's xmin has finished, so no
    -- event below it can still appear: the page never skips a late commit.
    visible_before := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());

    RETURN QUERY
        SELECT e.*
        FROM finam.events AS e
        WHERE (e.transaction_id, e.position) > (after_transaction, after_position)
          AND e.transaction_id < visible_before
        ORDER BY e.transaction_id, e.position
        LIMIT max_count;
END;
$function$;

COMMENT ON FUNCTION finam.read_all(bigint, integer) IS
    'Gap-safe page of all events after the event at after_position (0 = from the start), at most max_count rows, '
    'in commit-safe order (transaction_id, position): positions are unique but not always ascending. '
    'Pass the position of the last row received to get the next page; every committed event arrives exactly once. '
    'Events committed after the oldest still-running write transaction of the whole server (any database) began '
    'wait for a later call, so a long transaction anywhere on the server delays readers. '
    'FC003 for after_position < 0, an unknown position or max_count < 1.';
