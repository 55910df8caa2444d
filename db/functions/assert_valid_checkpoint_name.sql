CREATE OR REPLACE FUNCTION finam.assert_valid_checkpoint_name(name text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = 'invalid argument: checkpoint name must be a non-empty text';
    END IF;
    IF pg_catalog.length(name) > 512 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format(
                'invalid argument: checkpoint name is %s characters long, the limit is 512 (starts with %L)',
                pg_catalog.length(name), pg_catalog.left(name, 40));
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.assert_valid_checkpoint_name(text) IS
    'Raises FC003 unless the checkpoint name is a non-empty text of at most 512 characters.';
