CREATE OR REPLACE FUNCTION finam.register_listener(
    name text,
    ttl interval DEFAULT '1 minute'
)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    expires timestamptz;
BEGIN
    IF name IS NULL OR name = '' OR pg_catalog.length(name) > 256 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = 'invalid argument: listener name must be a non-empty text of at most 256 characters';
    END IF;
    IF ttl IS NULL OR ttl <= '0'::interval OR ttl > '1 day'::interval THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: listener ttl must be between 0 (excluded) and 1 day, got %s',
                                        coalesce(ttl::text, 'NULL'));
    END IF;

    DELETE FROM finam.listeners AS l
    WHERE l.expires_at <= pg_catalog.now();

    INSERT INTO finam.listeners AS l (name, registered_at, expires_at)
    VALUES (register_listener.name, pg_catalog.now(), pg_catalog.now() + ttl)
    ON CONFLICT ON CONSTRAINT listeners_pkey DO UPDATE
        SET registered_at = excluded.registered_at,
            expires_at = excluded.expires_at
    RETURNING l.expires_at INTO expires;
    RETURN expires;
END;
$function$;

COMMENT ON FUNCTION finam.register_listener(text, interval) IS
    'Registers or renews a listener until now() + ttl and returns that moment. While any registration is alive, '
    'every append sends NOTIFY finam_events with the stream name as payload (a wake-up hint: keep polling). '
    'Renew before the ttl lapses; a crashed subscriber stops costing writers when it does. '
    'FC003 for an empty name or a ttl outside (0, 1 day].';
