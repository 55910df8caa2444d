CREATE OR REPLACE FUNCTION finam.cursor_transaction(after_position bigint)
RETURNS xid8
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    transaction xid8;
BEGIN
    IF after_position = 0 THEN
        RETURN '0'::xid8;
    END IF;

    SELECT e.transaction_id
    INTO transaction
    FROM finam.events AS e
    WHERE e.position = after_position;

    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: after_position %s is not the position of a stored event',
                                        after_position);
    END IF;
    RETURN transaction;
END;
$function$;

COMMENT ON FUNCTION finam.cursor_transaction(bigint) IS
    'Transaction id of the event at after_position (0 for the start): the (transaction_id, position) cursor '
    'that read_all and read_category continue from. FC003 for a position no stored event has.';
