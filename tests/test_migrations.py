"""Migrations (yoyo over db/migrations): apply, idempotence, rollback, pre-existing roles.

``blank_dsn`` is a fresh, empty database on the test server; ``dsn``/``db`` a fresh
migrated one. Roles are cluster-wide, so they exist before and after every test here.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import uuid
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import REPO_ROOT
from finam_thin import migrations
from support import API_FUNCTIONS, API_VERSION, MIGRATION_IDS, wait_until_readable

TABLES_1_0 = {"events", "snapshots", "listeners"}
TABLES = TABLES_1_0 | {"checkpoints"}
VIEWS = {"streams", "category_summary", "type_summary"}
FUNCTIONS_NEW_IN_1_1 = {"advance_checkpoint", "assert_valid_checkpoint_name", "delete_checkpoint", "is_readable",
                        "load_checkpoint"}
API_FUNCTIONS_1_0 = API_FUNCTIONS - FUNCTIONS_NEW_IN_1_1
# The last commit of SQL API 1.0.0 (migrations 0001-0005): what an existing installation runs.
RELEASE_1_0_0 = "2857128b4e7494b5b1dc0ca7dc72add75bc2c555"
# The last commit of SQL API 1.1.0 (migrations 0001-0007).
RELEASE_1_1_0 = "4f56d33a0aebd186f6c3a1dc717c06cf5f6a5504"

# Everything that defines the installed product: routine definitions and ACLs, relations with their
# columns, ACLs and comments, view definitions, triggers, indexes and the schema's ACL and comment.
DEFINITION_PARTS = """
    SELECT 'function ' || p.oid::regprocedure::text || E'\\n' || pg_get_functiondef(p.oid)
           || coalesce(p.proacl::text, '<default acl>') || coalesce(obj_description(p.oid, 'pg_proc'), '')
    FROM pg_proc AS p WHERE p.pronamespace = n.oid
    UNION ALL
    SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '<default acl>')
           || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
           || coalesce(' ' || pg_get_viewdef(c.oid), '')
    FROM pg_class AS c WHERE c.relnamespace = n.oid AND c.relkind <> 'i'
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid WHERE c.relnamespace = n.oid
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || ' ' || a.attnotnull::text || ' ' || coalesce(col_description(c.oid, a.attnum), '')
    FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
    WHERE c.relnamespace = n.oid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
    WHERE c.relnamespace = n.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'schema ' || coalesce(n.nspacl::text, '') || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
"""


def definition_fingerprint(conn) -> str | None:
    """md5 of the installed objects' definitions (None when there is no schema finam)."""
    return conn.execute(
        f"""
        SELECT md5(string_agg(part, E'\\n' ORDER BY part))
        FROM pg_namespace AS n
        CROSS JOIN LATERAL ({DEFINITION_PARTS}) AS parts(part)
        WHERE n.nspname = 'finam'
        """
    ).fetchone()[0]


def identity_fingerprint(conn) -> str | None:
    """md5 of the objects' identities *and row versions*: any re-creation or
    CREATE OR REPLACE of a routine changes it, even with an identical definition."""
    return conn.execute(
        """
        SELECT md5(string_agg(part, ',' ORDER BY part))
        FROM pg_namespace AS n
        CROSS JOIN LATERAL (
            SELECT 'p' || p.oid::text || ':' || p.xmin::text FROM pg_proc AS p WHERE p.pronamespace = n.oid
            UNION ALL
            SELECT 'c' || c.oid::text || ':' || c.relname || ':' || c.relfilenode::text
            FROM pg_class AS c WHERE c.relnamespace = n.oid
            UNION ALL
            SELECT 't' || t.oid::text || ':' || t.xmin::text
            FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid WHERE c.relnamespace = n.oid
            UNION ALL
            SELECT 'n' || n.oid::text || ':' || n.xmin::text
        ) AS parts(part)
        WHERE n.nspname = 'finam'
        """
    ).fetchone()[0]


def connect(dsn):
    return psycopg.connect(dsn, autocommit=True)


def schema_exists(conn) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'finam')").fetchone()[0]


def relations(conn, kinds: str) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'finam' AND c.relkind::text = ANY(%s)", (list(kinds),))}


def functions(conn) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'finam'")}


def triggers(conn) -> set[str]:
    return {row[0] for row in conn.execute(
        "SELECT t.tgname FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = 'finam' AND NOT t.tgisinternal")}


def applied_ids(dsn) -> list[str]:
    return [item.id for item in migrations.status(dsn) if item.applied]


def roles_exist(conn) -> dict[str, bool]:
    rows = dict(conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('finam_reader', 'finam_writer')"
    ).fetchall())
    return rows


def assert_fully_installed(conn):
    assert schema_exists(conn)
    assert relations(conn, "r") == TABLES
    assert relations(conn, "v") == VIEWS
    assert functions(conn) == API_FUNCTIONS
    assert triggers(conn) == {"events_immutable"}
    assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == API_VERSION


def assert_as_1_1_0(conn):
    """The objects and version of SQL API 1.1.0, and its load_snapshot (no FC003 for a layout below 1)."""
    assert relations(conn, "r") == TABLES
    assert relations(conn, "v") == VIEWS
    assert functions(conn) == API_FUNCTIONS
    assert triggers(conn) == {"events_immutable"}
    assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == "1.1.0"
    assert conn.execute("SELECT count(*) FROM finam.load_snapshot('account-1', 0)").fetchone()[0] == 0


def assert_as_1_0_0(conn):
    """The objects, version and reader grants of SQL API 1.0.0 (no trace of 1.1)."""
    assert schema_exists(conn)
    assert relations(conn, "r") == TABLES_1_0
    assert relations(conn, "v") == VIEWS
    assert functions(conn) == API_FUNCTIONS_1_0
    assert triggers(conn) == {"events_immutable"}
    assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == "1.0.0"
    for relation in TABLES_1_0 | VIEWS:
        assert conn.execute("SELECT has_table_privilege('finam_reader', %s, 'SELECT')",
                            (f"finam.{relation}",)).fetchone()[0], relation
        assert not conn.execute("SELECT has_table_privilege('public', %s, 'SELECT')",
                                (f"finam.{relation}",)).fetchone()[0], relation


def writer_can_append(conn, stream="account-1") -> int:
    """Append one event as finam_writer (SET ROLE); return its version."""
    conn.execute("SET ROLE finam_writer")
    try:
        return conn.execute(
            "SELECT version FROM finam.append_event(%s, %s, 'Deposited', %s)",
            (stream, uuid.uuid4(), Jsonb({"amount": "1"})),
        ).fetchone()[0]
    finally:
        conn.execute("RESET ROLE")


# --------------------------------------------------------------------------- tests


def test_status_of_an_empty_database_lists_every_migration_pending(blank_dsn):
    status = migrations.status(blank_dsn)
    assert [item.id for item in status] == MIGRATION_IDS
    assert not any(item.applied for item in status)
    with connect(blank_dsn) as conn:
        assert not schema_exists(conn)


def test_apply_installs_everything_and_is_idempotent(blank_dsn):
    assert migrations.apply(blank_dsn) == MIGRATION_IDS
    assert applied_ids(blank_dsn) == MIGRATION_IDS
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        assert roles_exist(conn) == {"finam_reader": False, "finam_writer": False}
        definitions, identities = definition_fingerprint(conn), identity_fingerprint(conn)
        assert definitions is not None and identities is not None
        yoyo_rows = conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0]
        assert writer_can_append(conn) == 1

    assert migrations.apply(blank_dsn) == []

    with connect(blank_dsn) as conn:
        assert definition_fingerprint(conn) == definitions
        assert identity_fingerprint(conn) == identities, "a second apply re-created or replaced objects"
        assert conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()[0] == yoyo_rows
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 1
    assert applied_ids(blank_dsn) == MIGRATION_IDS


def test_rollback_undoes_only_the_last_migration(blank_dsn):
    migrations.apply(blank_dsn)
    with connect(blank_dsn) as conn:
        writer_can_append(conn)
        conn.execute("SELECT finam.advance_checkpoint('projection', 0, (SELECT max(position) FROM finam.events))")

    assert migrations.rollback(blank_dsn) == ["0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert_as_1_1_0(conn)
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM finam.checkpoints").fetchone()[0] == 1
    assert migrations.apply(blank_dsn) == ["0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)

    # Rolling back 0008 and 0007 gives the 1.0.0 API over the 1.1 tables.
    assert migrations.rollback(blank_dsn, 2) == ["0008.install-api-1.2", "0007.install-api-1.1"]

    with connect(blank_dsn) as conn:
        assert schema_exists(conn)
        assert functions(conn) == API_FUNCTIONS_1_0
        assert relations(conn, "v") == VIEWS
        assert triggers(conn) == {"events_immutable"}
        assert relations(conn, "r") == TABLES
        assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == "1.0.0"
        # The tables and their data are untouched.
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM finam.checkpoints").fetchone()[0] == 1
    assert [(item.id, item.applied) for item in migrations.status(blank_dsn)] == \
        [(mid, mid < "0007") for mid in MIGRATION_IDS]

    # Re-applying installs only the API again; the stored event and checkpoint are still there.
    assert migrations.apply(blank_dsn) == ["0007.install-api-1.1", "0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        assert writer_can_append(conn) == 2
        assert conn.execute("SELECT finam.load_checkpoint('projection')").fetchone()[0] == \
            conn.execute("SELECT min(position) FROM finam.events").fetchone()[0]


def test_rollback_of_1_0_0_api_keeps_the_data(blank_dsn):
    """Rolling back 0008 to 0005 drops every routine and view; the 1.0.0 tables keep their rows."""
    migrations.apply(blank_dsn)
    with connect(blank_dsn) as conn:
        writer_can_append(conn)

    assert migrations.rollback(blank_dsn, 4) == ["0008.install-api-1.2", "0007.install-api-1.1",
                                                 "0006.create-checkpoints-table", "0005.install-api"]
    with connect(blank_dsn) as conn:
        assert schema_exists(conn)
        assert functions(conn) == set()
        assert relations(conn, "v") == set()
        assert triggers(conn) == set()
        assert relations(conn, "r") == TABLES_1_0
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 1

    assert migrations.apply(blank_dsn) == MIGRATION_IDS[-4:]
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        assert writer_can_append(conn) == 2


def test_rollback_step_by_step_then_apply_again(blank_dsn):
    migrations.apply(blank_dsn)
    with connect(blank_dsn) as conn:
        original = definition_fingerprint(conn)

    expected_after = {
        "0008.install-api-1.2": (TABLES, API_FUNCTIONS),
        "0007.install-api-1.1": (TABLES, API_FUNCTIONS_1_0),
        "0006.create-checkpoints-table": (TABLES_1_0, API_FUNCTIONS_1_0),
        "0005.install-api": (TABLES_1_0, set()),
        "0004.create-listeners-table": ({"events", "snapshots"}, set()),
        "0003.create-snapshots-table": ({"events"}, set()),
        "0002.create-events-table": (set(), set()),
    }
    for migration_id in reversed(MIGRATION_IDS):
        assert migrations.rollback(blank_dsn) == [migration_id]
        with connect(blank_dsn) as conn:
            if migration_id == "0001.create-schema-and-roles":
                assert not schema_exists(conn)
            else:
                tables, routines = expected_after[migration_id]
                assert schema_exists(conn)
                assert relations(conn, "r") == tables
                assert functions(conn) == routines
                if migration_id == "0008.install-api-1.2":
                    assert_as_1_1_0(conn)
                if migration_id == "0006.create-checkpoints-table":
                    assert_as_1_0_0(conn)
        assert applied_ids(blank_dsn) == MIGRATION_IDS[:MIGRATION_IDS.index(migration_id)]

    assert migrations.rollback(blank_dsn) == []
    with connect(blank_dsn) as conn:
        assert not schema_exists(conn)
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN ('events', 'snapshots', 'listeners') "
            "AND relnamespace <> 'pg_catalog'::regnamespace"
        ).fetchone()[0] == 0
        # Roles are cluster-wide: a rollback in one database leaves them in place (documented).
        assert roles_exist(conn) == {"finam_reader": False, "finam_writer": False}

    # Migrating again while the roles already exist works and restores the same product.
    assert migrations.apply(blank_dsn) == MIGRATION_IDS
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        assert definition_fingerprint(conn) == original
        assert conn.execute("SELECT pg_has_role('finam_writer', 'finam_reader', 'MEMBER')").fetchone()[0]
        assert writer_can_append(conn) == 1


def test_rollback_of_several_at_once(blank_dsn):
    migrations.apply(blank_dsn)
    assert migrations.rollback(blank_dsn, 5) == ["0008.install-api-1.2", "0007.install-api-1.1",
                                                 "0006.create-checkpoints-table", "0005.install-api",
                                                 "0004.create-listeners-table"]
    with connect(blank_dsn) as conn:
        assert relations(conn, "r") == {"events", "snapshots"}
        assert functions(conn) == set()
    assert migrations.apply(blank_dsn) == MIGRATION_IDS[-5:]
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)


def test_two_databases_on_one_server_share_the_roles(dsn, db, blank_dsn):
    # ``db`` was migrated from the session template, so the roles already exist
    # before ``blank_dsn`` is migrated.
    with connect(blank_dsn) as blank:
        assert roles_exist(blank) == {"finam_reader": False, "finam_writer": False}
        assert not schema_exists(blank)
    role_oids = db.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname IN ('finam_reader', 'finam_writer') ORDER BY 1"
    ).fetchall()

    assert migrations.apply(dsn) == []  # already migrated
    assert migrations.apply(blank_dsn) == MIGRATION_IDS

    with connect(blank_dsn) as blank:
        assert_fully_installed(blank)
        assert writer_can_append(blank) == 1
    assert_fully_installed(db)
    assert writer_can_append(db) == 1
    with connect(blank_dsn) as blank:
        assert definition_fingerprint(blank) == definition_fingerprint(db)

    # Same roles (not re-created), still NOLOGIN and nested.
    assert db.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname IN ('finam_reader', 'finam_writer') ORDER BY 1"
    ).fetchall() == role_oids

    # Fully rolling back one database leaves the other one (and the shared roles) working.
    assert len(migrations.rollback(blank_dsn, len(MIGRATION_IDS))) == len(MIGRATION_IDS)
    with connect(blank_dsn) as blank:
        assert not schema_exists(blank)
    assert_fully_installed(db)
    assert writer_can_append(db) == 2
    assert db.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname IN ('finam_reader', 'finam_writer') ORDER BY 1"
    ).fetchall() == role_oids


def test_migrations_accept_a_url_dsn(blank_dsn):
    params = psycopg.conninfo.conninfo_to_dict(blank_dsn)
    dbname = params.pop("dbname")
    url = f"postgresql:///{quote(dbname)}?" + urlencode({k: str(v) for k, v in params.items()})
    assert psycopg.conninfo.conninfo_to_dict(url)["dbname"] == dbname
    assert migrations.apply(url) == MIGRATION_IDS
    assert [item.applied for item in migrations.status(blank_dsn)] == [True] * len(MIGRATION_IDS)
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)


SQL_MIGRATIONS = [mid for mid in MIGRATION_IDS[1:] if (migrations.migrations_dir() / f"{mid}.sql").exists()]
PYTHON_MIGRATIONS = [mid for mid in MIGRATION_IDS[1:] if (migrations.migrations_dir() / f"{mid}.py").exists()]


def test_every_migration_is_sql_or_python():
    assert len(SQL_MIGRATIONS) + len(PYTHON_MIGRATIONS) == len(MIGRATION_IDS) - 1
    assert {"0002.create-events-table", "0006.create-checkpoints-table"} <= set(SQL_MIGRATIONS)
    assert {"0005.install-api", "0007.install-api-1.1", "0008.install-api-1.2"} <= set(PYTHON_MIGRATIONS)


@pytest.mark.parametrize("migration_id", SQL_MIGRATIONS)
def test_table_migrations_declare_their_dependency(migration_id):
    """Each table migration names its predecessor, so yoyo applies them in order."""
    source = (migrations.migrations_dir() / f"{migration_id}.sql").read_text(encoding="utf-8")
    previous = MIGRATION_IDS[MIGRATION_IDS.index(migration_id) - 1]
    assert f"-- depends: {previous}" in source
    assert (migrations.migrations_dir() / f"{migration_id}.rollback.sql").exists()


@pytest.mark.parametrize("migration_id", PYTHON_MIGRATIONS)
def test_api_migrations_declare_their_dependency(migration_id):
    source = (migrations.migrations_dir() / f"{migration_id}.py").read_text(encoding="utf-8")
    previous = MIGRATION_IDS[MIGRATION_IDS.index(migration_id) - 1]
    assert f'__depends__ = {{"{previous}"}}' in source


# --------------------------------------------------------------------------- upgrade 1.0.0 -> 1.1.0


def release_migrations(tmp_path, commit: str, version: str):
    """db/migrations of a release, exported from git (skips without the repository history)."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, "db"],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"the {version} release ({commit[:7]}) is not in this checkout's git history: {error}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path / f"release-{version}", filter="data")
    return tmp_path / f"release-{version}" / "db" / "migrations"


def release_1_0_0_migrations(tmp_path):
    """db/migrations of the 1.0.0 release."""
    directory = release_migrations(tmp_path, RELEASE_1_0_0, "1.0.0")
    assert sorted(p.name for p in directory.glob("*.py")) == ["0005.install-api.py"]
    return directory


def release_1_1_0_migrations(tmp_path):
    """db/migrations of the 1.1.0 release."""
    directory = release_migrations(tmp_path, RELEASE_1_1_0, "1.1.0")
    assert sorted(p.name for p in directory.glob("*.py")) == ["0005.install-api.py", "0007.install-api-1.1.py"]
    return directory


def current_migrations_up_to_0005(tmp_path):
    """Today's db/ tree without 0006 and later: 0005 installs the current source files."""
    root = tmp_path / "up-to-0005" / "db"
    shutil.copytree(migrations.migrations_dir().parent, root)
    for path in (root / "migrations").iterdir():
        if path.name.split(".", 1)[0] > "0005":
            path.unlink()
    return root / "migrations"


def apply_from(monkeypatch, directory, dsn) -> list[str]:
    """``migrations.apply`` (what ``finam migrate`` runs) over another migrations directory."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "migrations_dir", lambda: directory)
        return migrations.apply(dsn)


@pytest.mark.parametrize("first_install", [release_1_0_0_migrations, current_migrations_up_to_0005],
                         ids=["1.0.0 release", "current files up to 0005"])
def test_migrate_upgrades_an_existing_installation_to_1_1(blank_dsn, monkeypatch, tmp_path, first_install):
    assert apply_from(monkeypatch, first_install(tmp_path), blank_dsn) == MIGRATION_IDS[:5]
    with connect(blank_dsn) as conn:
        assert relations(conn, "r") == TABLES_1_0
        if first_install is release_1_0_0_migrations:
            assert_as_1_0_0(conn)
            installed_1_0_0 = definition_fingerprint(conn)
        assert writer_can_append(conn, "account-old") == 1
        old_position = conn.execute("SELECT position FROM finam.events").fetchone()[0]
    assert [item.applied for item in migrations.status(blank_dsn)] == [True] * 5 + [False] * 3

    assert migrations.apply(blank_dsn) == ["0006.create-checkpoints-table", "0007.install-api-1.1",
                                           "0008.install-api-1.2"]

    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        assert conn.execute("SELECT finam.load_checkpoint('projection')").fetchone()[0] == 0
        wait_until_readable(conn)
        assert conn.execute("SELECT finam.is_readable(%s)", (old_position,)).fetchone()[0] is True
        conn.execute("SET ROLE finam_writer")
        assert conn.execute("SELECT finam.advance_checkpoint('projection', 0, %s)",
                            (old_position,)).fetchone()[0] is True
        conn.execute("RESET ROLE")
        assert writer_can_append(conn, "account-old") == 2
        assert conn.execute("SELECT finam.load_checkpoint('projection')").fetchone()[0] == old_position
        conn.execute("SET ROLE finam_reader")
        assert conn.execute("SELECT position FROM finam.checkpoints").fetchall() == [(old_position,)]
        conn.execute("RESET ROLE")
    # The same product as a fresh installation.
    with connect(blank_dsn) as conn:
        upgraded = definition_fingerprint(conn)

    # Rolling back 0008, 0007 then 0006 leaves the database as 1.0.0 was; the events stay.
    assert migrations.rollback(blank_dsn, 3) == ["0008.install-api-1.2", "0007.install-api-1.1",
                                                 "0006.create-checkpoints-table"]
    with connect(blank_dsn) as conn:
        assert_as_1_0_0(conn)
        if first_install is release_1_0_0_migrations:
            assert definition_fingerprint(conn) == installed_1_0_0
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 2
    assert migrations.apply(blank_dsn) == ["0006.create-checkpoints-table", "0007.install-api-1.1",
                                           "0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert definition_fingerprint(conn) == upgraded


def test_rollback_of_a_fresh_1_1_install_restores_1_0_0_exactly(blank_dsn, monkeypatch, tmp_path):
    """Fresh 1.1 install, then rollback of 0007 and 0006: the definitions of the 1.0.0 release."""
    release = release_1_0_0_migrations(tmp_path)
    assert apply_from(monkeypatch, release, blank_dsn) == MIGRATION_IDS[:5]
    with connect(blank_dsn) as conn:
        installed_1_0_0 = definition_fingerprint(conn)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "migrations_dir", lambda: release)
        assert len(migrations.rollback(blank_dsn, 5)) == 5
    with connect(blank_dsn) as conn:
        assert not schema_exists(conn)

    assert migrations.apply(blank_dsn) == MIGRATION_IDS
    assert migrations.rollback(blank_dsn, 3) == ["0008.install-api-1.2", "0007.install-api-1.1",
                                                 "0006.create-checkpoints-table"]
    with connect(blank_dsn) as conn:
        assert_as_1_0_0(conn)
        assert definition_fingerprint(conn) == installed_1_0_0


# --------------------------------------------------------------------------- upgrade 1.1.0 -> 1.2.0


def test_migrate_upgrades_a_1_1_0_installation_and_rollback_restores_it_exactly(blank_dsn, monkeypatch, tmp_path):
    """The 1.1.0 release, then 0008: the same product as a fresh install; rolling 0008 back gives 1.1.0's
    definitions object for object (db/releases/1.1.0), and the data stay."""
    assert apply_from(monkeypatch, release_1_1_0_migrations(tmp_path), blank_dsn) == MIGRATION_IDS[:7]
    with connect(blank_dsn) as conn:
        assert_as_1_1_0(conn)
        installed_1_1_0 = definition_fingerprint(conn)
        assert writer_can_append(conn) == 1

    assert migrations.apply(blank_dsn) == ["0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert_fully_installed(conn)
        upgraded = definition_fingerprint(conn)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT * FROM finam.load_snapshot('account-1', 0)")
        assert refused.value.sqlstate == "FC003"
        assert writer_can_append(conn) == 2

    assert migrations.rollback(blank_dsn) == ["0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert_as_1_1_0(conn)
        assert definition_fingerprint(conn) == installed_1_1_0
        assert conn.execute("SELECT count(*) FROM finam.events").fetchone()[0] == 2
    assert migrations.apply(blank_dsn) == ["0008.install-api-1.2"]
    with connect(blank_dsn) as conn:
        assert definition_fingerprint(conn) == upgraded


def test_db_releases_1_1_0_holds_what_1_1_0_shipped(tmp_path):
    """The rollback sources of 0008 are the 1.1.0 release's files, byte for byte."""
    release = release_1_1_0_migrations(tmp_path).parent / "functions"
    saved = REPO_ROOT / "db" / "releases" / "1.1.0"
    names = sorted(p.name for p in saved.glob("*.sql"))
    assert names == ["advance_checkpoint.sql", "append_batch.sql", "append_event.sql", "load_snapshot.sql",
                     "schema_version.sql"]
    for name in names:
        assert (saved / name).read_text() == (release / name).read_text(), name
