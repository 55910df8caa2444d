"""The ``finam`` console script, run as a subprocess against a real PostgreSQL.

POSTGRES_DSN points at a fresh empty database (``blank_dsn``), or is removed to
exercise the embedded PostgreSQL in $FINAM_DATA_DIR.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from finam_thin.database import redact
from support import API_VERSION, MIGRATION_IDS

FINAM = Path(sys.prefix) / "bin" / "finam"
if not FINAM.exists():  # fall back to the checkout's venv
    FINAM = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "finam"

SECRET = "s3cr3t-pw"


def run_finam(*args: str, dsn: str | None, cwd: Path, extra_env: dict | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("POSTGRES_DSN", None)
    env.pop("FINAM_DATA_DIR", None)
    if dsn is not None:
        env["POSTGRES_DSN"] = dsn
    env.update(extra_env or {})
    return subprocess.run([str(FINAM), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


# --------------------------------------------------------------------------- migrate


def test_migrate_apply_list_rollback(blank_dsn, tmp_path):
    first = ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    assert [line for line in first.stdout.splitlines() if line.startswith("applied ")] == \
        [f"applied {mid}" for mid in MIGRATION_IDS]
    assert "is up to date" in first.stdout
    assert "nothing to apply" not in first.stdout
    assert "embedded" not in first.stderr  # POSTGRES_DSN is used, not the embedded server

    second = ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    assert "nothing to apply" in second.stdout
    assert "applied " not in second.stdout

    listed = ok(run_finam("migrate", "--list", dsn=blank_dsn, cwd=tmp_path))
    assert [line.split() for line in listed.stdout.splitlines() if line.strip()] == \
        [["applied", mid] for mid in MIGRATION_IDS]

    rolled = ok(run_finam("migrate", "--rollback", dsn=blank_dsn, cwd=tmp_path))
    assert rolled.stdout.splitlines() == ["rolled back 0008.install-api-1.2"]
    with psycopg.connect(blank_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'finam'::regnamespace"
                            " AND proname IN ('load_checkpoint', 'advance_checkpoint', 'is_readable')"
                            ).fetchone()[0] == 3
        assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == "1.1.0"
        assert conn.execute("SELECT to_regclass('finam.checkpoints') IS NOT NULL").fetchone()[0]

    listed = ok(run_finam("migrate", "--list", dsn=blank_dsn, cwd=tmp_path))
    assert [line.split() for line in listed.stdout.splitlines() if line.strip()] == \
        [["applied", mid] for mid in MIGRATION_IDS[:-1]] + [["pending", MIGRATION_IDS[-1]]]

    again = ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    assert [line for line in again.stdout.splitlines() if line.startswith("applied ")] == \
        ["applied 0008.install-api-1.2"]
    with psycopg.connect(blank_dsn) as conn:
        assert conn.execute("SELECT finam.schema_version()").fetchone()[0] == API_VERSION


def test_migrate_rollback_n_and_nothing_left(blank_dsn, tmp_path):
    ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    rolled = ok(run_finam("migrate", "--rollback", str(len(MIGRATION_IDS)), dsn=blank_dsn, cwd=tmp_path))
    assert rolled.stdout.splitlines() == [f"rolled back {mid}" for mid in reversed(MIGRATION_IDS)]
    nothing = ok(run_finam("migrate", "--rollback", dsn=blank_dsn, cwd=tmp_path))
    assert "nothing to roll back" in nothing.stdout
    with psycopg.connect(blank_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('finam') IS NULL").fetchone()[0]


def test_migrate_rejects_bad_usage(blank_dsn, tmp_path):
    result = run_finam("migrate", "--list", "--rollback", dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 2
    result = run_finam(dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 2
    with psycopg.connect(blank_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('finam') IS NULL").fetchone()[0]


# --------------------------------------------------------------------------- walkthrough


def test_walkthrough_runs_twice_on_new_streams(blank_dsn, tmp_path):
    first = ok(run_finam("walkthrough", dsn=blank_dsn, cwd=tmp_path))
    out = first.stdout
    assert "walkthrough on stream 'walkthrough-1'" in out
    for code in ("FC001", "FC002", "FC003"):
        assert re.search(rf"^\s*\d+\. .*-> {code} ", out, re.MULTILINE), f"no {code} line in:\n{out}"
    assert "duplicate=True" in out
    assert "duplicate=False" in out
    assert "walkthrough-2" not in out

    second = ok(run_finam("walkthrough", dsn=blank_dsn, cwd=tmp_path))
    assert "walkthrough on stream 'walkthrough-2'" in second.stdout
    assert "walkthrough-1" not in second.stdout
    for code in ("FC001", "FC002", "FC003"):
        assert code in second.stdout
    assert "duplicate=True" in second.stdout

    with psycopg.connect(blank_dsn) as conn:
        rows = conn.execute(
            "SELECT stream, version FROM finam.streams WHERE category = 'walkthrough' ORDER BY stream"
        ).fetchall()
        assert rows == [("walkthrough-1", 3), ("walkthrough-2", 3)]
        snapshots = conn.execute("SELECT stream, version FROM finam.snapshots ORDER BY stream").fetchall()
        assert snapshots == [("portfolio-walkthrough-1", 15), ("portfolio-walkthrough-2", 15),
                             ("walkthrough-1", 3), ("walkthrough-2", 3)]
        heads = conn.execute("SELECT stream, version FROM finam.streams WHERE category = 'portfolio' "
                             "ORDER BY stream").fetchall()
        assert heads == [("portfolio-walkthrough-1", 16), ("portfolio-walkthrough-2", 16)]


def test_walkthrough_engine_tour_rebuilds_the_same_hash_on_every_run(blank_dsn, tmp_path):
    runs = [ok(run_finam("walkthrough", dsn=blank_dsn, cwd=tmp_path)).stdout for _ in range(2)]
    hashes = []
    for out in runs:
        assert re.search(r"events handled: \{'walkthrough-order-desk': 16, 'walkthrough-snapshots': 16\}; "
                         r"failures: 0", out), out
        # hand-computed: buy 100 @ 189.25 and 50 @ 190.10 -> avg 28430/150; sell 120 @ 192.40 -> realized 344.00;
        # cash 100000 - 18925 - 9505 + 23088 - 3 fees = 94655; equity 94655 + 30 x 191.00 = 100385
        assert "AAPL 30 @ avg 189.5333, realized 344.00, cash 94655.00, fees 3, equity 100385.00" in out
        folded = re.search(r"state_hash ([0-9a-f]{64})\n", out).group(1)
        rebuilt = re.search(r"restart: snapshot at version 15 \+ 1 events -> state_hash ([0-9a-f]{64}), "
                            r"identical: True", out).group(1)
        assert folded == rebuilt
        hashes.append(folded)
    assert hashes[0] == hashes[1]  # the same facts in two streams: the same state


# --------------------------------------------------------------------------- embedded PostgreSQL


def test_migrate_uses_the_embedded_server_without_postgres_dsn(tmp_path):
    data_dir = tmp_path / "fd"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {"FINAM_DATA_DIR": str(data_dir)}

    first = ok(run_finam("migrate", dsn=None, cwd=workdir, extra_env=env, timeout=180))
    assert "embedded PostgreSQL" in first.stderr
    assert str(data_dir / "pgdata") in first.stderr
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    assert [line for line in first.stdout.splitlines() if line.startswith("applied ")] == \
        [f"applied {mid}" for mid in MIGRATION_IDS]
    assert not (workdir / ".finam").exists(), "FINAM_DATA_DIR must replace the default ./.finam"

    second = ok(run_finam("migrate", dsn=None, cwd=workdir, extra_env=env, timeout=180))
    assert "embedded PostgreSQL" in second.stderr
    assert "nothing to apply" in second.stdout
    assert "applied " not in second.stdout


# --------------------------------------------------------------------------- password redaction

UNREACHABLE_DSNS = [
    f"postgresql://postgres:{SECRET}@127.0.0.1:1/nodb",
    f"host=127.0.0.1 port=1 user=postgres password={SECRET} dbname=nodb",
]


@pytest.mark.parametrize("dsn", UNREACHABLE_DSNS, ids=["url", "key-value"])
@pytest.mark.parametrize("args", [("migrate",), ("migrate", "--list"), ("migrate", "--rollback"), ("walkthrough",),
                                  ("demo", "--signals", "10"), ("run", "signals.jsonl", "--portfolio", "p1"),
                                  ("streams",), ("show", "portfolio-p1"), ("replay", "portfolio-p1")],
                         ids=lambda a: " ".join(a))
def test_connection_error_never_shows_the_password(dsn, args, tmp_path):
    (tmp_path / "signals.jsonl").write_text("")
    result = run_finam(*args, dsn=dsn, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert "database error" in result.stderr
    assert "Traceback" not in result.stderr


def test_library_errors_and_logs_never_show_the_password(blank_dsn, caplog, monkeypatch):
    """The Python API's errors and every log record (psycopg, the pool, yoyo, finam) keep the password out."""
    from finam_thin import migrations
    from finam_thin.database import create_pool
    from finam_thin.persistence import NewEvent
    from finam_thin.postgres import PostgresEventStore

    caplog.set_level(logging.DEBUG)
    for dsn in UNREACHABLE_DSNS:
        monkeypatch.setenv("POSTGRES_DSN", dsn)
        with pytest.raises(psycopg.OperationalError) as pool_error:  # at once, not a pool timeout
            create_pool(dsn, min_size=1, max_size=1)
        with pytest.raises(psycopg.OperationalError) as migrate_error:
            migrations.apply(dsn)
        for error in (pool_error.value, migrate_error.value):
            chain = [error, error.__cause__, error.__context__]
            assert all(SECRET not in repr(e) and SECRET not in str(e) for e in chain if e is not None)

    # A working DSN with a password: migrate, append, fail an append; the logs of all that stay clean.
    params = conninfo_to_dict(blank_dsn)
    params["password"] = params.get("password") or SECRET
    dsn = make_conninfo(**params)
    try:
        psycopg.connect(dsn).close()
    except psycopg.OperationalError:
        pytest.skip("the test server does not accept an arbitrary password for this user")
    monkeypatch.setenv("POSTGRES_DSN", dsn)
    migrations.apply(dsn)
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        store.append("account-1", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}), expected_version=0)
        with pytest.raises(Exception) as append_error:
            store.append("account-1", NewEvent(uuid.uuid4(), "Deposited", {"amount": "1"}), expected_version=0)
        assert params["password"] not in str(append_error.value)
    assert caplog.records, "nothing was logged: the check of the logs proves nothing"
    for secret in {SECRET, params["password"]}:
        assert secret not in caplog.text
        assert all(secret not in repr(record.args) for record in caplog.records)


def test_success_output_redacts_the_password(blank_dsn, tmp_path):
    params = conninfo_to_dict(blank_dsn)
    secret = params.get("password") or SECRET
    params["password"] = secret
    dsn = make_conninfo(**params)
    try:
        psycopg.connect(dsn).close()
    except psycopg.OperationalError:
        pytest.skip("the test server does not accept an arbitrary password for this user")
    result = ok(run_finam("migrate", dsn=dsn, cwd=tmp_path))
    assert "is up to date" in result.stdout
    assert secret not in result.stdout
    assert secret not in result.stderr
    assert "password=***" in result.stdout


# --------------------------------------------------------------------------- redact()


@pytest.mark.parametrize(
    "dsn, expected",
    [
        (f"postgresql://alice:{SECRET}@db.example:6543/finam",
         {"user": "alice", "password": "***", "host": "db.example", "port": "6543", "dbname": "finam"}),
        (f"postgres://alice:{SECRET}@db.example/finam?sslmode=require",
         {"user": "alice", "password": "***", "host": "db.example", "dbname": "finam", "sslmode": "require"}),
        (f"host=db.example port=6543 user=alice password={SECRET} dbname=finam",
         {"user": "alice", "password": "***", "host": "db.example", "port": "6543", "dbname": "finam"}),
        (f"host=db.example user=alice password='{SECRET} with space' dbname=finam",
         {"user": "alice", "password": "***", "host": "db.example", "dbname": "finam"}),
        ("postgresql://alice:p%40ss%3Aword@db.example/finam",
         {"user": "alice", "password": "***", "host": "db.example", "dbname": "finam"}),
    ],
    ids=["url", "url-query", "key-value", "key-value-quoted", "url-percent-encoded"],
)
def test_redact_hides_the_password(dsn, expected):
    redacted = redact(dsn)
    assert SECRET not in redacted
    assert "p@ss" not in redacted and "p%40ss" not in redacted and "ss:word" not in redacted
    assert conninfo_to_dict(redacted) == expected


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://alice@db.example:6543/finam", "host=db.example user=alice dbname=finam", ""],
)
def test_redact_keeps_a_dsn_without_password(dsn):
    assert conninfo_to_dict(redact(dsn)) == conninfo_to_dict(dsn)
    assert "***" not in redact(dsn)


def test_redact_of_an_unparseable_dsn_reveals_nothing():
    redacted = redact(f"host=db.example password='{SECRET}")  # unterminated quote
    assert SECRET not in redacted
    assert redacted == "<unparseable DSN>"
