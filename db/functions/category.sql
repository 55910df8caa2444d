CREATE OR REPLACE FUNCTION finam.category(stream text)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
    SELECT pg_catalog.split_part(stream, '-', 1)
$function$;

COMMENT ON FUNCTION finam.category(text) IS
    'Category of a stream name: the part before the first "-" (the whole name when there is none).';
