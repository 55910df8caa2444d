CREATE OR REPLACE FUNCTION finam.schema_version()
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
    SELECT '1.1.0'::text
$function$;

COMMENT ON FUNCTION finam.schema_version() IS
    'Version of the Finam Core SQL API installed in this database (semantic versioning).';
