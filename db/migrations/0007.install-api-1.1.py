"""Finam Core 0007: SQL API 1.1.0 — durable handler checkpoints and a readability probe.

Re-installs the whole API from its source files (db/api_installer.py, as 0005
does), so a database already at 1.0.0 gets the new functions
(load_checkpoint, advance_checkpoint, delete_checkpoint, is_readable and their
helper), the grants that name them and schema_version() = '1.1.0'.

Rollback drops the routines that are new in 1.1 and puts back the 1.0.0
schema_version(). Every other routine is unchanged since 1.0.0, and the grants
on what remains are the same (1.1 grants SELECT on all tables and views, which
are the ones 1.0.0 named), so after rolling back 0007 and then 0006 the
database is as 1.0.0 left it.
"""

import importlib.util
from pathlib import Path

from yoyo import step

__depends__ = {"0006.create-checkpoints-table"}

ROUTINES_NEW_IN_1_1 = (
    "finam.advance_checkpoint(text, bigint, bigint)",
    "finam.delete_checkpoint(text)",
    "finam.load_checkpoint(text)",
    "finam.is_readable(bigint)",
    "finam.assert_valid_checkpoint_name(text)",
)

# db/functions/schema_version.sql as released in 1.0.0 (CREATE OR REPLACE keeps its grants).
SCHEMA_VERSION_1_0_0 = """\
CREATE OR REPLACE FUNCTION finam.schema_version()
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, finam, pg_temp
AS $function$
    SELECT '1.0.0'::text
$function$;

COMMENT ON FUNCTION finam.schema_version() IS
    'Version of the Finam Core SQL API installed in this database (semantic versioning).';
"""


def load_installer():
    """db/api_installer.py, loaded by path (db/migrations is not a package)."""
    path = Path(__file__).resolve().parent.parent / "api_installer.py"
    spec = importlib.util.spec_from_file_location("finam_db_api_installer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


installer = load_installer()


def back_to_1_0_0(connection):
    cursor = connection.cursor()
    for routine in ROUTINES_NEW_IN_1_1:
        cursor.execute(f"DROP FUNCTION {routine}")
    cursor.execute(SCHEMA_VERSION_1_0_0)


steps = [step(installer.install_api, back_to_1_0_0)]
