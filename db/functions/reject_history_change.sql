CREATE OR REPLACE FUNCTION finam.reject_history_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'FC004',
        MESSAGE = pg_catalog.format('history is immutable: %s on %I.%I is not allowed',
                                    TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME),
        HINT = 'Append a compensating event instead.';
END;
$function$;

COMMENT ON FUNCTION finam.reject_history_change() IS
    'Trigger function: raises FC004 for any UPDATE, DELETE or TRUNCATE of finam.events, whoever runs it.';
