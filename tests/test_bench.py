"""Smoke test of scripts/bench.py --quick: every section runs and the Markdown table is complete.

The benchmark runs in a subprocess against the test server (POSTGRES_DSN points at its
``postgres`` database as the maintenance target); it creates and drops its own scratch
database, named per test process so concurrent runs do not collide.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg

from conftest import REPO_ROOT, server_dsn

NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?(e[+-]?\d+)?$")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every data row of the results table (section number first)."""
    rows = []
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_quick_benchmark_writes_every_section(tmp_path):
    output = tmp_path / "bench.md"
    database = f"finam_bench_test_{os.getpid()}"
    env = {**os.environ, "POSTGRES_DSN": server_dsn("postgres")}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--quick", "--output", str(output),
         "--database", database],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    markdown = output.read_text()
    for header in ("**CPUs**", "**PostgreSQL**", "| § | Measure | Median |"):
        assert header in markdown
    rows = table_rows(markdown)
    assert {row[0] for row in rows} == {"1", "2", "3", "4", "5", "6"}
    for label in ("plain INSERT, 1 row/tx", "`append_event`", "`append_events`", "`append_batch`",
                  "one hot stream", "conflict rate", "eventsourcing `insert_events`", "`PostgresEventStore.append`",
                  "`PostgresEventStore.read_all`", "(b) `PortfolioRepository.load(use_snapshot=False)`",
                  "(c) eventsourcing `app.repository.get`", "(b) / eventsourcing rebuild",
                  "restart: `PortfolioRepository.load`", "full replay", "busy reader: tailing cost",
                  "paced reader: tailing cost", "reader: its `read_all` calls", "missed + saw twice"):
        assert any(label in row[1] for row in rows), label
    for section, label, median, *_ in rows:
        assert NUMBER.match(median), (label, median)
    for row in rows:  # every replay and restart target is judged (met or missed), none pending
        if row[0] in ("4", "5") and row[6]:
            assert row[7] in ("met", "**missed**"), row
    # The fixture stream was checked against the same events built in Python and encoded canonically.
    assert "fixture checked" in markdown
    exactness = [row for row in rows if "missed + saw twice" in row[1]]
    assert len(exactness) == 2  # the busy and the paced reader: each saw every event once
    assert all(row[2] == "0" and row[7] == "met" for row in exactness), exactness

    with psycopg.connect(server_dsn("postgres")) as connection:  # the scratch database is gone
        assert connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None
