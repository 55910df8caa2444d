CREATE OR REPLACE FUNCTION finam.delete_checkpoint(name text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    PERFORM finam.assert_valid_checkpoint_name(name);

    DELETE FROM finam.checkpoints AS c
    WHERE c.name = delete_checkpoint.name;
    RETURN FOUND;
END;
$function$;

COMMENT ON FUNCTION finam.delete_checkpoint(text) IS
    'Removes a follower''s checkpoint, so it counts as 0 again (to rebuild a projection from the start); '
    'returns whether one existed. FC003 for a NULL, empty or over-long name.';
