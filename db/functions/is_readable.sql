CREATE OR REPLACE FUNCTION finam.is_readable(event_position bigint)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    event_transaction xid8;
BEGIN
    SELECT e.transaction_id
    INTO event_transaction
    FROM finam.events AS e
    WHERE e.position = event_position;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: event_position %s is not the position of a stored event',
                                        coalesce(event_position::text, 'NULL'));
    END IF;

    -- The horizon read_all uses: every transaction below it has finished.
    RETURN event_transaction < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
END;
$function$;

COMMENT ON FUNCTION finam.is_readable(bigint) IS
    'Whether read_all has reached the event at event_position: its transaction is older than the oldest one still '
    'running on the server, so a reader following read_all from before it receives it now (and nothing can still '
    'appear before it). False for the caller''s own uncommitted append and while an older write transaction, in any '
    'database of the server, is open. FC003 for a position no stored event has (or one not visible yet).';
