-- Finam Core 0004: registered listeners. Appends send NOTIFY finam_events only
-- while at least one registration is alive (NOTIFY serializes committers).
-- depends: 0003.create-snapshots-table

CREATE TABLE finam.listeners (
    name text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT listeners_pkey PRIMARY KEY (name)
);

COMMENT ON TABLE finam.listeners IS
    'Subscribers that want NOTIFY finam_events wake-ups. A registration lapses at expires_at; '
    'manage with finam.register_listener / finam.unregister_listener.';
COMMENT ON COLUMN finam.listeners.name IS 'Subscriber name, chosen by the subscriber.';
COMMENT ON COLUMN finam.listeners.registered_at IS 'When the registration was last renewed.';
COMMENT ON COLUMN finam.listeners.expires_at IS 'After this moment the registration no longer causes notifications.';
COMMENT ON INDEX finam.listeners_pkey IS 'One registration per listener name.';
