CREATE OR REPLACE TRIGGER events_immutable
BEFORE UPDATE OR DELETE OR TRUNCATE ON finam.events
FOR EACH STATEMENT
EXECUTE FUNCTION finam.reject_history_change();

COMMENT ON TRIGGER events_immutable ON finam.events IS
    'History is immutable: UPDATE, DELETE and TRUNCATE raise FC004, for the table owner too.';
