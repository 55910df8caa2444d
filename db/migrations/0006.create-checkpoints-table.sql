-- Finam Core 0006: durable checkpoints of read_all followers (handlers, projections).
-- One row per follower name: the read_all cursor of the last event it handled.
-- Written only through finam.advance_checkpoint / finam.delete_checkpoint (migration 0007).
-- depends: 0005.install-api

CREATE TABLE finam.checkpoints (
    name text NOT NULL,
    position bigint NOT NULL,
    transaction_id xid8 NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT checkpoints_pkey PRIMARY KEY (name),
    CONSTRAINT checkpoints_name_valid CHECK (name <> '' AND pg_catalog.length(name) <= 512),
    CONSTRAINT checkpoints_position_not_negative CHECK (position >= 0),
    CONSTRAINT checkpoints_start_has_no_transaction CHECK ((position = 0) = (transaction_id = '0'::xid8))
);

COMMENT ON TABLE finam.checkpoints IS
    'Durable read_all checkpoint of each named follower (event handler, projection). Advance with '
    'finam.advance_checkpoint (compare-and-set) in the transaction that stores the handler''s output; '
    'read with finam.load_checkpoint; remove with finam.delete_checkpoint to rebuild from the start.';
COMMENT ON COLUMN finam.checkpoints.name IS 'Follower name, chosen by the follower (1 to 512 characters).';
COMMENT ON COLUMN finam.checkpoints.position IS
    'read_all cursor: the position of the last event handled (pass it to read_all as after_position).';
COMMENT ON COLUMN finam.checkpoints.transaction_id IS
    'transaction_id of the event at position (''0'' for position 0), copied so the (transaction_id, position) '
    'order of read_all can be compared without a lookup.';
COMMENT ON COLUMN finam.checkpoints.updated_at IS 'When the checkpoint last moved (server clock; informative only).';
COMMENT ON INDEX finam.checkpoints_pkey IS 'One checkpoint per follower name.';

REVOKE ALL ON finam.checkpoints FROM PUBLIC;

GRANT SELECT ON finam.checkpoints TO finam_reader;
