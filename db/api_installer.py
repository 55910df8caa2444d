"""Installs the Finam Core SQL API from its source files (used by migrations 0005 and 0007).

Each function, view, trigger and the privilege set lives in its own file under
db/functions, db/views, db/triggers and db/privileges (CREATE OR REPLACE).
``install_api`` runs them in that order: functions first (PL/pgSQL bodies are
not resolved at CREATE time, so a function may name a table a later migration
creates), then the views, triggers and grants that refer to them.

This module sits beside db/migrations rather than in it because yoyo treats
every .py file there as a migration; the migrations load it by path
(``load_installer`` in each of them).
"""

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent
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
    """CREATE OR REPLACE every function, view and trigger, then apply the grants."""
    cursor = connection.cursor()
    for path in api_source_files():
        cursor.execute(path.read_text(encoding="utf-8"))


def drop_api(connection):
    """Drop every view and routine of schema finam (and so the triggers that use them)."""
    cursor = connection.cursor()
    for query in (DROP_VIEWS, DROP_ROUTINES):
        cursor.execute(query)
        for (statement,) in cursor.fetchall():
            cursor.execute(statement)
