CREATE OR REPLACE FUNCTION finam.assert_valid_expected_version(stream text, expected_version bigint)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    IF expected_version < 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: expected_version must be NULL or >= 0, got %s for stream %L',
                                        expected_version, stream);
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.assert_valid_expected_version(text, bigint) IS
    'Raises FC003 for a negative expected_version (NULL means: no check).';
