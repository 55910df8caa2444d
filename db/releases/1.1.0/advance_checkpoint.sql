CREATE OR REPLACE FUNCTION finam.advance_checkpoint(
    name text,
    from_position bigint,
    to_position bigint
)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    from_transaction xid8;
    to_transaction xid8;
BEGIN
    PERFORM finam.assert_valid_checkpoint_name(name);
    IF from_position IS NULL OR to_position IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: cannot advance checkpoint %L: from_position and to_position must not be NULL, '
                'got %s and %s', name, coalesce(from_position::text, 'NULL'), coalesce(to_position::text, 'NULL'));
    END IF;

    -- The same (transaction_id, position) cursor as finam.cursor_transaction,
    -- looked up here so the message names the checkpoint.
    SELECT e.transaction_id
    INTO to_transaction
    FROM finam.events AS e
    WHERE e.position = to_position;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: cannot advance checkpoint %L to position %s: no stored event has that position',
                name, to_position);
    END IF;

    IF from_position = 0 THEN
        from_transaction := '0'::xid8;
    ELSE
        SELECT e.transaction_id
        INTO from_transaction
        FROM finam.events AS e
        WHERE e.position = from_position;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'FC003',
                MESSAGE = pg_catalog.format(
                    'invalid argument: cannot advance checkpoint %L from position %s: it is neither 0 '
                    'nor the position of a stored event', name, from_position);
        END IF;
    END IF;

    IF (to_transaction, to_position) <= (from_transaction, from_position) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: cannot advance checkpoint %L from position %s to %s: read_all delivers '
                '(transaction_id, position) = (%s, %s) before or at (%s, %s), not after it',
                name, from_position, to_position, to_transaction, to_position, from_transaction, from_position);
    END IF;

    -- Compare-and-set. An absent checkpoint counts as 0: the first advance
    -- inserts, and a concurrent first advance that commits first wins (the
    -- insert waits for it, then does nothing).
    IF from_position = 0 THEN
        INSERT INTO finam.checkpoints AS c (name, position, transaction_id, updated_at)
        VALUES (advance_checkpoint.name, to_position, to_transaction, pg_catalog.now())
        ON CONFLICT ON CONSTRAINT checkpoints_pkey DO NOTHING;
        IF FOUND THEN
            RETURN true;
        END IF;
    END IF;

    -- A concurrent advance holds the row until it commits; READ COMMITTED then
    -- re-checks the condition against its result, so only one of them moves it.
    UPDATE finam.checkpoints AS c
    SET position = to_position,
        transaction_id = to_transaction,
        updated_at = pg_catalog.now()
    WHERE c.name = advance_checkpoint.name
      AND c.position = from_position;
    RETURN FOUND;
END;
$function$;

COMMENT ON FUNCTION finam.advance_checkpoint(text, bigint, bigint) IS
    'Compare-and-set of a follower''s read_all checkpoint: moves it from from_position (an absent checkpoint '
    'counts as 0) to to_position and returns true; returns false and writes nothing when the checkpoint is not at '
    'from_position (another worker moved it, or won a concurrent first advance). Call it in the transaction that '
    'stores the handler''s output so both commit or neither. to_position should be one read_all delivered. '
    'FC003: invalid name; NULL positions; to_position not a stored event''s position; from_position neither 0 nor '
    'a stored event''s position; to_position not strictly after from_position in read_all order '
    '(transaction_id, position).';
