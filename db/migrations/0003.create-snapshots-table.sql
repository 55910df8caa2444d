-- Finam Core 0003: snapshots, one per (stream, state schema version).
-- depends: 0002.create-events-table

CREATE TABLE finam.snapshots (
    stream text NOT NULL,
    schema_version integer NOT NULL DEFAULT 1,
    version bigint NOT NULL,
    state jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream, schema_version),
    CONSTRAINT snapshots_version_positive CHECK (version >= 1),
    CONSTRAINT snapshots_schema_version_positive CHECK (schema_version >= 1)
);

COMMENT ON TABLE finam.snapshots IS
    'Latest snapshot of each stream per state schema version. Write only through finam.save_snapshot; '
    'read with finam.load_snapshot.';
COMMENT ON COLUMN finam.snapshots.stream IS 'The stream whose events the state folds.';
COMMENT ON COLUMN finam.snapshots.schema_version IS 'Version of the state''s JSON layout; a reader ignores other versions.';
COMMENT ON COLUMN finam.snapshots.version IS 'Stream version folded into the state (events 1..version).';
COMMENT ON COLUMN finam.snapshots.state IS 'The folded state, a JSON object.';
COMMENT ON COLUMN finam.snapshots.created_at IS 'When the snapshot was saved (server clock; informative only).';
COMMENT ON INDEX finam.snapshots_pkey IS 'One snapshot per stream and state layout.';
