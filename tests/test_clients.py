"""Clients in other languages, run as subprocesses against the test's fresh database.

- scripts/clients/node/walkthrough.js: the SQL API from Node.js with the `pg` package
  (``npm ci`` first when node_modules is missing). Skipped only when node or npm is not on PATH.
- scripts/psql/tour.sql: the DBA tour, run twice with psql to show it is rerunnable.
- psql's \\d+ and \\df+ show the COMMENT texts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = REPO_ROOT / "scripts" / "clients" / "node"
TOUR = REPO_ROOT / "scripts" / "psql" / "tour.sql"
PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE")


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def clean_env() -> dict:
    """The test process's environment without any connection setting (PGOPTIONS stays)."""
    env = dict(os.environ)
    for name in (*PG_ENV, "POSTGRES_DSN"):
        env.pop(name, None)
    return env


def pg_env(dsn: str) -> dict:
    """PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for ``dsn`` (libpq and `pg` both honour them)."""
    params = conninfo_to_dict(dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE"}
    return {names[key]: str(value) for key, value in params.items() if key in names and value}


def url(dsn: str) -> str:
    """``dsn`` as a postgresql:// URL that `pg` parses; a Unix socket goes in ?host=."""
    params = conninfo_to_dict(dsn)
    user = quote(params.get("user") or "postgres", safe="")
    password = params.get("password")
    auth = user + (":" + quote(password, safe="") if password else "")
    dbname = quote(params["dbname"], safe="")
    host = params.get("host") or "localhost"
    port = params.get("port")
    if host.startswith("/"):
        query = f"host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgresql://{auth}@/{dbname}?{query}"
    return f"postgresql://{auth}@{host}{':' + str(port) if port else ''}/{dbname}"


# --------------------------------------------------------------------------- Node.js


@pytest.fixture(scope="module")
def node_client() -> Path:
    """scripts/clients/node with its dependencies installed (npm ci when node_modules is missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH")
    if not (NODE_DIR / "node_modules" / "pg" / "package.json").exists():
        ok(subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=600))
    return NODE_DIR


def run_walkthrough(node_dir: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "walkthrough.js", *args], cwd=node_dir, env=env, capture_output=True,
                          text=True, timeout=120)


def line(stdout: str, pattern: str) -> re.Match:
    """The one output line that matches ``pattern`` entirely."""
    matches = [m for m in (re.fullmatch(pattern, text) for text in stdout.splitlines()) if m]
    assert len(matches) == 1, f"expected one line matching {pattern!r} in:\n{stdout}"
    return matches[0]


@pytest.mark.parametrize("connection", ["url", "key-value", "pg-env"])
def test_node_walkthrough(node_client, db, dsn, connection):
    env = clean_env()
    if connection == "url":
        env["POSTGRES_DSN"] = url(dsn)
    elif connection == "key-value":
        env["POSTGRES_DSN"] = dsn  # libpq key=value, translated by walkthrough.js
    else:
        env.update(pg_env(dsn))
    stream = f"nodetest-{connection}"
    result = ok(run_walkthrough(node_client, env, stream))
    out = result.stdout

    connected = line(out, r"connected -> database (\S+) PostgreSQL .* finam 1\.2\.0 stream (\S+)")
    assert connected.groups() == (db.info.dbname, stream)

    p1 = line(out, r"append_event -> version 1 position (\d+) duplicate false").group(1)
    p2, p3 = line(out, r"append_events -> version 2 position (\d+) duplicate false; "
                       r"version 3 position (\d+) duplicate false").groups()
    p4 = line(out, r"FC001 caught: expected 1 actual 3; retried -> version 4 position (\d+) duplicate false"
              ).group(1)
    line(out, rf"append_event same id again -> version 1 position {p1} duplicate true")
    line(out, r"read_stream -> 4 events: 1 CashDeposited, 2 StrategySignalEvent, 3 OrderRequested, 4 OrderFilled")
    first_tail = line(out, rf"read_all after checkpoint {p1} -> (\d+) events \((\d+) of {stream}\) in (\d+) pages "
                           rf"of at most 2, then an empty page; checkpoint {p4}")
    assert first_tail.groups() == ("3", "3", "2")
    line(out, r"register_listener -> node-walkthrough until \S+")
    line(out, r"LISTEN finam_events on a dedicated connection")
    p5 = line(out, r"append_event from another connection -> version 5 position (\d+) duplicate false").group(1)
    line(out, rf"notification: {stream}")
    second_tail = line(out, rf"read_all after checkpoint {p4} -> (\d+) events? \((\d+) of {stream}\); "
                            rf"checkpoint {p5}")
    assert second_tail.groups() == ("1", "1")
    line(out, r"unregister_listener -> true")
    line(out, rf"done: stream {stream} at version 5")

    # What it printed is what is stored: every row of this fresh database, in order.
    rows = db.execute("SELECT stream, version, position, type, payload, metadata FROM finam.events "
                      "ORDER BY position").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (stream, 1, int(p1), "CashDeposited"),
        (stream, 2, int(p2), "StrategySignalEvent"),
        (stream, 3, int(p3), "OrderRequested"),
        (stream, 4, int(p4), "OrderFilled"),
        (stream, 5, int(p5), "CashWithdrawn"),
    ]
    # read_all delivered every row after the checkpoint event exactly once.
    assert 1 + int(first_tail.group(1)) + int(second_tail.group(1)) == len(rows)
    # Money and quantities travel as strings.
    assert rows[0][4] == {"currency": "USD", "amount": "100000.00"}
    assert rows[3][4]["price"] == "187.20"
    signal_id = db.execute("SELECT id::text FROM finam.events WHERE stream = %s AND version = 2",
                           (stream,)).fetchone()[0]
    assert rows[2][5] == {"causation_id": signal_id}
    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 0
    assert result.stderr == ""


def test_node_walkthrough_fails_loudly(node_client, blank_dsn):
    """On an unmigrated database it exits 1 with the PostgreSQL error on stderr."""
    env = clean_env()
    env["POSTGRES_DSN"] = url(blank_dsn)
    result = run_walkthrough(node_client, env)
    assert result.returncode == 1, result
    assert re.match(r"error (42883|3F000): .*finam", result.stderr), result.stderr


def test_node_lockfile_is_committed_and_pins_pg():
    assert (NODE_DIR / "package-lock.json").exists()
    lock = (NODE_DIR / "package-lock.json").read_text()
    assert '"node_modules/pg"' in lock
    ignored = subprocess.run(["git", "check-ignore", "-q", "scripts/clients/node/node_modules/pg"],
                             cwd=REPO_ROOT)
    assert ignored.returncode == 0, "scripts/clients/node/node_modules/ must be in .gitignore"


# --------------------------------------------------------------------------- psql


def run_psql(dsn: str, *args: str) -> subprocess.CompletedProcess:
    env = clean_env()
    env.update(pg_env(dsn))
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


SECTIONS = [
    "=== 1. What is installed",
    "=== 2. Sample events",
    "=== 3. Streams, categories and event types",
    "=== 4. One stream's history: finam.read_stream",
    "=== 5. A version conflict: SQLSTATE FC001",
    "=== 6. Idempotent retry",
    "=== 7. Roles: who may do what",
    "=== 8. What a listener costs",
    "=== 9. Finding a waiting writer: pg_locks and finam.stream_lock_key(stream)",
    "=== End of the tour",
]


def cells(text: str, first: str) -> list[list[str]]:
    """The rows of psql's aligned output whose first cell is ``first``, split into cells."""
    rows = []
    for row in text.splitlines():
        parts = [part.strip() for part in row.split("|")]
        if parts[0] == first:
            rows.append(parts)
    return rows


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not on PATH")
def test_psql_tour_runs_and_reruns(db, dsn):
    outputs = [ok(run_psql(dsn, "-f", str(TOUR))) for _ in range(2)]
    stored = db.execute("SELECT stream, version, position, type FROM finam.events ORDER BY position").fetchall()
    assert [(s, v, t) for s, v, _, t in stored] == [
        ("tour-1", 1, "CashDeposited"), ("tour-1", 2, "StrategySignalEvent"),
        ("tour-1", 3, "OrderRequested"), ("tour-2", 1, "CashDeposited"),
    ]
    positions = [p for _, _, p, _ in stored]

    for run, result in enumerate(outputs):
        out, err = result.stdout, result.stderr
        for header in SECTIONS:
            assert header in out, f"missing section {header!r}"
        assert "NOTICE:  FC001 caught: wrong expected version for stream 'tour-1': expected 1, actual 3" in err
        assert 'NOTICE:  FC001 detail: {"stream" : "tour-1", "expected" : 1, "actual" : 3}' in err
        assert "NOTICE:  FC002 caught: event id 70a70000-0000-4000-8000-000000000001" in err
        assert "ERROR" not in err

        # The sample appends: new on the first run, duplicates (same versions and positions) after.
        duplicate = "f" if run == 0 else "t"
        appended = [row for row in cells(out, "1") if len(row) == 3]  # version | position | duplicate
        assert appended[:2] == [["1", str(positions[0]), duplicate], ["1", str(positions[3]), duplicate]]
        assert appended[2] == ["1", str(positions[0]), "t"]  # section 6: the retry
        assert cells(out, "70a70000-0000-4000-8000-000000000002") == [
            ["70a70000-0000-4000-8000-000000000002", "2", str(positions[1]), duplicate]]

        # Streams, categories, types.
        assert ["tour-1", "tour", "3", str(positions[2]), "OrderRequested"] == cells(out, "tour-1")[0][:5]
        assert ["tour-2", "tour", "1", str(positions[3]), "CashDeposited"] == cells(out, "tour-2")[0][:5]
        assert cells(out, "tour")[0][:3] == ["tour", "2", "4"]
        assert cells(out, "StrategySignalEvent")[0][:3] == ["StrategySignalEvent", "1", "1"]

        # The roles matrix.
        assert cells(out, "finam_reader")[0][:3] == ["finam_reader", "f", "t"]
        assert cells(out, "finam_writer")[0][:3] == ["finam_writer", "f", "t"]
        assert cells(out, "finam.events") == [["finam.events", "table", "SELECT", "SELECT"]]
        assert cells(out, "finam.streams") == [["finam.streams", "view", "SELECT", "SELECT"]]
        assert cells(out, "finam.append_event(text,uuid,text,jsonb,bigint,jsonb)") == [
            ["finam.append_event(text,uuid,text,jsonb,bigint,jsonb)", "f", "t", "f", "t"]]
        assert cells(out, "finam.read_all(bigint,integer)") == [
            ["finam.read_all(bigint,integer)", "t", "t", "f", "f"]]
        assert cells(out, "finam.register_listener(text,interval)") == [
            ["finam.register_listener(text,interval)", "t", "t", "f", "t"]]

        # Listener cost text and registration round trip; the lock query finds this session.
        assert "7,600 appends/s with no listener registered, 3,800 appends/s with one." in out
        assert cells(out, "psql-tour") == [["psql-tour", "t"]]
        lock_rows = [row for row in out.splitlines() if re.match(r"\s*\d+ \| t\s+\| t\s+\| active", row)]
        assert len(lock_rows) == 1, out

    assert db.execute("SELECT count(*) FROM finam.listeners").fetchone()[0] == 0


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not on PATH")
def test_psql_describe_shows_comments(db, dsn):
    table = ok(run_psql(dsn, "-c", r"\d+ finam.events")).stdout
    assert "Event id, chosen by the client; the idempotency key of an append." in table
    assert "Global position: unique and increasing in draw order, with possible gaps; not commit order." in table
    relations = ok(run_psql(dsn, "-c", r"\dt+ finam.events")).stdout
    assert "Every event ever appended, never updated or deleted." in relations
    function = ok(run_psql(dsn, "-c", r"\df+ finam.append_event")).stdout
    assert "Appends one event to a stream and returns its version and global position." in function
    assert "Holds the stream's advisory lock until commit." in function
