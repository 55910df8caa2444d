"""The test environment is what the suite claims: real PostgreSQL, strict PL/pgSQL, migrated schema."""


def test_schema_is_migrated(db):
    assert db.execute("SELECT finam.schema_version()").fetchone()[0] == "1.2.0"
    tables = {row[0] for row in db.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'finam'")}
    assert tables == {"events", "snapshots", "listeners", "checkpoints"}


def test_plpgsql_strict_checks_are_on(db):
    assert db.execute("SHOW plpgsql.extra_errors").fetchone()[0] == "all"
    assert db.execute("SHOW plpgsql.extra_warnings").fetchone()[0] == "all"


def test_strict_checks_compile_every_api_function(db):
    """Recompiling each PL/pgSQL function in a strict session raises nothing."""
    functions = db.execute(
        "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc AS p "
        "JOIN pg_language AS l ON l.oid = p.prolang "
        "WHERE p.pronamespace = 'finam'::regnamespace AND l.lanname = 'plpgsql'").fetchall()
    assert len(functions) >= 15
    for _signature, definition in functions:
        db.execute(definition)  # CREATE OR REPLACE runs the validator with extra_errors = all
