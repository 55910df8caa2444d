CREATE OR REPLACE FUNCTION finam.assert_valid_page(start_name text, start_value bigint, start_minimum bigint, max_count integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    IF start_value IS NULL OR start_value < start_minimum THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: %s must be >= %s, got %s',
                                        start_name, start_minimum, coalesce(start_value::text, 'NULL'));
    END IF;
    IF max_count IS NULL OR max_count < 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: max_count must be >= 1, got %s',
                                        coalesce(max_count::text, 'NULL'));
    END IF;
END;
$function$;

COMMENT ON FUNCTION finam.assert_valid_page(text, bigint, bigint, integer) IS
    'Raises FC003 unless start_value >= start_minimum and max_count >= 1 (the paging arguments of the read functions).';
