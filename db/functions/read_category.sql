CREATE OR REPLACE FUNCTION finam.read_category(
    category text,
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000
)
RETURNS SETOF finam.events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
DECLARE
    after_transaction xid8;
    visible_before xid8;
BEGIN
    IF category IS NULL OR category = '' OR pg_catalog.strpos(category, '-') > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'FC003',
            MESSAGE = pg_catalog.format('invalid argument: category must be a non-empty text without "-", got %L', category);
    END IF;
    PERFORM finam.assert_valid_page('after_position', after_position, 0, max_count);

    after_transaction := finam.cursor_transaction(after_position);

    visible_before := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());

    RETURN QUERY
        SELECT e.*
        FROM finam.events AS e
        WHERE e.category = read_category.category
          AND (e.transaction_id, e.position) > (after_transaction, after_position)
          AND e.transaction_id < visible_before
        ORDER BY e.transaction_id, e.position
        LIMIT max_count;
END;
$function$;

COMMENT ON FUNCTION finam.read_category(text, bigint, integer) IS
    'Gap-safe page of the events of every stream in a category (stream name before the first "-"), '
    'with the same cursor, order and guarantees as finam.read_all. '
    'FC003 for an empty category or one containing "-", after_position < 0, an unknown position or max_count < 1.';
