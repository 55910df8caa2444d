CREATE OR REPLACE FUNCTION finam.load_checkpoint(name text)
RETURNS bigint
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    stored_position bigint;
BEGIN
    PERFORM finam.assert_valid_checkpoint_name(name);

    SELECT c.position
    INTO stored_position
    FROM finam.checkpoints AS c
    WHERE c.name = load_checkpoint.name;

    RETURN coalesce(stored_position, 0);
END;
$function$;

COMMENT ON FUNCTION finam.load_checkpoint(text) IS
    'The read_all cursor stored for a follower: the position of the last event it handled, 0 when it has none '
    '(start from the beginning). Pass it to read_all as after_position, and to advance_checkpoint as from_position. '
    'FC003 for a NULL, empty or over-long name.';
