CREATE OR REPLACE FUNCTION finam.unregister_listener(name text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
BEGIN
    DELETE FROM finam.listeners AS l
    WHERE l.name = unregister_listener.name;
    RETURN FOUND;
END;
$function$;

COMMENT ON FUNCTION finam.unregister_listener(text) IS
    'Removes a listener registration; returns whether one existed. Appends stop notifying once none is alive.';
