"""Finam Core 0005: install the SQL API from its source files.

Each function, view, trigger and the privilege set lives in its own file under
db/functions, db/views, db/triggers and db/privileges (CREATE OR REPLACE), so a
DBA reads and reviews one object at a time. This step installs them in that
order; its rollback drops every routine and view of schema finam (which also
drops the triggers that use them).
"""

from pathlib import Path

from yoyo import step

__depends__ = {"0004.create-listeners-table"}

SOURCE_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRECTORIES = ("functions", "views", "triggers", "privileges")

DROP_VIEWS = """
    SELECT pg_catalog.format('DROP VIEW %s CASCADE', c.oid::regclass)
    FROM pg_catalog.pg_class AS c
    WHERE c.relnamespace = 'finam'::regnamespace AND c.relkind = 'v'
"""
DROP_ROUTINES = """
    SELECT pg_catalog.format('DROP ROUTINE %s CASCADE', p.oid::regprocedure)
    FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = 'finam'::regnamespace
"""


def api_source_files():
    """The API's SQL files in installation order."""
    for directory in SOURCE_DIRECTORIES:
        yield from sorted((SOURCE_ROOT / directory).glob("*.sql"))


def install_api(connection):
    cursor = connection.cursor()
    for path in api_source_files():
        cursor.execute(path.read_text(encoding="utf-8"))


def drop_api(connection):
    cursor = connection.cursor()
    for query in (DROP_VIEWS, DROP_ROUTINES):
        cursor.execute(query)
        for (statement,) in cursor.fetchall():
            cursor.execute(statement)


steps = [step(install_api, drop_api)]
