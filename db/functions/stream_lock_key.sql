CREATE OR REPLACE FUNCTION finam.stream_lock_key(stream text)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
    -- 64-bit hash of the stream name, seeded with 0x66696E616D ('finam') so the
    -- keys form their own namespace. A collision between two streams only makes
    -- their writers wait for each other; the unique (stream, version) index
    -- remains the guarantee.
    SELECT pg_catalog.hashtextextended(stream, 440410599789)
$function$;

COMMENT ON FUNCTION finam.stream_lock_key(text) IS
    'Advisory-lock key (pg_advisory_xact_lock) that serializes the appends to one stream. '
    'Find a writer in pg_locks with: locktype = ''advisory'' AND ((classid::bigint << 32) | objid::bigint) = key.';
