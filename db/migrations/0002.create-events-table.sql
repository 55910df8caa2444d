-- Finam Core 0002: the append-only events table (the seed's columns plus metadata,
-- a global position and the writing transaction's id for gap-safe reads).
-- depends: 0001.create-schema-and-roles

CREATE TABLE finam.events (
    id uuid NOT NULL,
    stream text NOT NULL,
    type text NOT NULL,
    version bigint NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    category text GENERATED ALWAYS AS (pg_catalog.split_part(stream, '-', 1)) STORED,
    CONSTRAINT events_pkey PRIMARY KEY (id),
    CONSTRAINT events_version_positive CHECK (version >= 1)
);

CREATE UNIQUE INDEX idx_events_stream_version
    ON finam.events (stream, version);

CREATE UNIQUE INDEX idx_events_position
    ON finam.events (position);

CREATE INDEX idx_events_transaction_position
    ON finam.events (transaction_id, position);

CREATE INDEX idx_events_category_transaction_position
    ON finam.events (category, transaction_id, position);

COMMENT ON TABLE finam.events IS
    'Every event ever appended, never updated or deleted. Write only through finam.append_event / '
    'finam.append_events; read with finam.read_stream, finam.read_all, finam.read_category.';
COMMENT ON COLUMN finam.events.id IS 'Event id, chosen by the client; the idempotency key of an append.';
COMMENT ON COLUMN finam.events.stream IS 'Stream name; its category is the part before the first "-".';
COMMENT ON COLUMN finam.events.type IS 'Event type name, e.g. StrategySignalEvent.';
COMMENT ON COLUMN finam.events.version IS 'Position within the stream: 1, 2, 3, ... without gaps.';
COMMENT ON COLUMN finam.events.payload IS 'Event data, a JSON object (money and quantities as strings).';
COMMENT ON COLUMN finam.events.metadata IS 'Event metadata, a JSON object (causation and correlation ids, ...).';
COMMENT ON COLUMN finam.events.created_at IS 'When the appending transaction started (server clock; informative only).';
COMMENT ON COLUMN finam.events.position IS 'Global position: unique and increasing in draw order, with possible gaps; not commit order.';
COMMENT ON COLUMN finam.events.transaction_id IS 'Id of the appending transaction; read_all orders by (transaction_id, position) to stay gap-safe.';
COMMENT ON COLUMN finam.events.category IS 'Stream category (part of the stream name before the first "-"), for read_category.';
COMMENT ON INDEX finam.events_pkey IS 'One row per event id: the idempotency key.';
COMMENT ON SEQUENCE finam.events_position_seq IS 'Draws finam.events.position; gaps are normal (a conflicting insert consumes a value).';
COMMENT ON INDEX finam.idx_events_stream_version IS 'One event per (stream, version): the final guard of optimistic concurrency.';
COMMENT ON INDEX finam.idx_events_position IS 'Finds the read_all cursor row by position.';
COMMENT ON INDEX finam.idx_events_transaction_position IS 'read_all scan order.';
COMMENT ON INDEX finam.idx_events_category_transaction_position IS 'read_category scan order.';
