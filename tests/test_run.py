"""`finam run` with a user's own file, and the inspection commands `streams`, `show`, `replay`."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from test_cli import ok, run_finam

OPEN = [
    {"type": "PortfolioOpened", "occurred_at": "2026-11-24T14:30:00Z", "base_currency": "USD"},
    {"type": "CashDeposited", "occurred_at": "2026-11-24T14:30:00Z", "currency": "USD", "amount": 100000},
    {"type": "InstrumentRegistered", "occurred_at": "2026-11-24T14:30:00Z", "instrument": "AAPL",
     "asset_class": "equity", "currency": "USD"},
    {"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:31:00Z", "instrument": "AAPL", "price": 189.25},
]
SIGNALS = [
    {"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:32:00Z", "strategy": "mine",
     "instrument": "AAPL", "side": "buy", "quantity": "10"},
    # sized by the stop: 100000 x 1 % / (189.25 - 180) = 108.1... -> 108 shares
    {"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:33:00Z", "strategy": "mine",
     "instrument": "AAPL", "side": "buy", "stop_price": "180"},
]


def write_jsonl(path, rows) -> None:
    path.write_text("# my signals\n" + "\n".join(json.dumps(row) for row in rows) + "\n")


def events_in(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT count(*) FROM finam.events").fetchone()[0]


def test_run_publishes_a_file_through_the_engine_and_a_rerun_is_a_no_op(blank_dsn, tmp_path):
    source = tmp_path / "mine.jsonl"
    write_jsonl(source, OPEN + SIGNALS)
    out = ok(run_finam("run", str(source), "--portfolio", "mine", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert "6 events read, 6 new, 0 already stored" in out
    assert "OrderFilled 2" in out and "OrderSubmitted 2" in out and "handler failures: 0" in out
    assert re.search(r"^  AAPL\t118\t@ 189.25\t", out, re.MULTILINE), out
    stored = events_in(blank_dsn)
    again = ok(run_finam("run", str(source), "--portfolio", "mine", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert "6 events read, 0 new, 6 already stored" in again and "written: nothing" in again
    assert events_in(blank_dsn) == stored
    hashes = re.findall(r"state_hash ([0-9a-f]{64})", out + again)
    assert len(hashes) == 2 and hashes[0] == hashes[1]

    # appending more lines to the same file publishes only the new ones
    write_jsonl(source, OPEN + SIGNALS + [{"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:40:00Z",
                                          "strategy": "mine", "instrument": "AAPL", "side": "sell",
                                          "quantity": "18"}])
    more = ok(run_finam("run", str(source), "--portfolio", "mine", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert "7 events read, 1 new, 6 already stored" in more
    assert re.search(r"^  AAPL\t100\t", more, re.MULTILINE), more

    streams = ok(run_finam("streams", "--category", "portfolio", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert re.search(r"^portfolio-mine\tversion \d+\t", streams, re.MULTILINE) and "1 stream(s)" in streams
    shown = ok(run_finam("show", "portfolio-mine", "--limit", "2", dsn=blank_dsn, cwd=tmp_path)).stdout.splitlines()
    assert shown[0].startswith("v1\t") and "PortfolioOpened" in shown[0] and '"base_currency":"USD"' in shown[0]
    assert shown[1].startswith("v2\t") and '"amount":"100000"' in shown[1] and len(shown) == 2
    replay = ok(run_finam("replay", "portfolio-mine", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert "identical: True" in replay


def test_run_reads_csv(blank_dsn, tmp_path):
    source = tmp_path / "mine.csv"
    source.write_text(
        "type,occurred_at,base_currency,currency,amount,instrument,asset_class,price,strategy,side,quantity\n"
        "PortfolioOpened,2026-11-24T14:30:00Z,USD,,,,,,,,\n"
        "CashDeposited,2026-11-24T14:30:00Z,,USD,50000,,,,,,\n"
        "InstrumentRegistered,2026-11-24T14:30:00Z,,USD,,MSFT,equity,,,,\n"
        "MarkPriceUpdated,2026-11-24T14:31:00Z,,,,MSFT,,410.5,,,\n"
        "StrategySignalEvent,2026-11-24T14:32:00Z,,,,MSFT,,,csv,buy,3\n")
    out = ok(run_finam("run", str(source), "--portfolio", "csv", dsn=blank_dsn, cwd=tmp_path)).stdout
    assert "5 events read, 5 new" in out and re.search(r"^  MSFT\t3\t@ 410.5\t", out, re.MULTILINE), out


BAD_LINES = [
    ('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:35:00Z", "instrument": "AAPL", "pri', "not valid JSON"),
    ('{"type": "PositionTeleported", "occurred_at": "2026-11-24T14:35:00Z"}', "cannot come from a file"),
    ('{"type": "OrderFilled", "occurred_at": "2026-11-24T14:35:00Z", "order_id": "x", "fill_id": "f", '
     '"quantity": "1", "price": "1"}', "cannot come from a file"),
    ('{"occurred_at": "2026-11-24T14:35:00Z"}', "a 'type' is required"),
    ('["MarkPriceUpdated"]', "expected a JSON object"),
    ('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:35:00Z", "price": "1"}', "instrument"),
    ('{"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:35:00Z", "strategy": "s", "instrument": "AAPL",'
     ' "side": "buy", "quantity": "-5"}', "must be positive"),
    ('{"type": "StrategySignalEvent", "occurred_at": "2026-11-24T14:35:00Z", "strategy": "s", "instrument": "AAPL",'
     ' "side": "sideways", "quantity": "5"}', "side"),
    ('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:35:00Z", "instrument": "AAPL", "price": NaN}',
     "not valid JSON"),
    ('{"type": "MarkPriceUpdated", "occurred_at": "yesterday", "instrument": "AAPL", "price": "1"}', "occurred_at"),
    ('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:35:00Z", "instrument": "AAPL", "price": "1", '
     '"colour": "red"}', "no field colour"),
    ('{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:35:00Z", "instrument": "TSLA", "price": "1"}',
     "unknown instrument 'TSLA'"),  # fits its class, but not the portfolio: found by folding before writing
]


@pytest.mark.parametrize("line, fragment", BAD_LINES)
def test_a_bad_line_is_reported_with_its_number_and_nothing_is_written(blank_dsn, tmp_path, line, fragment):
    source = tmp_path / "bad.jsonl"
    write_jsonl(source, OPEN + SIGNALS)
    source.write_text(source.read_text() + line + "\n")
    ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    result = run_finam("run", str(source), "--portfolio", "bad", dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "error FC003" in result.stderr and "nothing was written" in result.stderr
    assert "line 8:" in result.stderr and fragment in result.stderr, result.stderr  # comment + 6 good lines first
    assert events_in(blank_dsn) == 0


@pytest.mark.parametrize("name, content, fragment", [
    ("empty.jsonl", "# nothing here\n\n", "holds no events"),
    ("bad.csv", "type,occurred_at,type\nPortfolioOpened,2026-11-24T14:30:00Z,x\n", "name each column once"),
    ("short.csv", "type,occurred_at,base_currency\nPortfolioOpened,2026-11-24T14:30:00Z\n", "line 2: 2 cells"),
    ("events.txt", "PortfolioOpened\n", "use a .jsonl or .csv file"),
])
def test_unusable_files_are_refused_before_anything_is_written(blank_dsn, tmp_path, name, content, fragment):
    source = tmp_path / name
    source.write_text(content)
    ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    result = run_finam("run", str(source), "--portfolio", "bad", dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 1 and fragment in result.stderr, result.stderr
    assert events_in(blank_dsn) == 0


def test_not_utf8_and_missing_files_are_clear_errors(blank_dsn, tmp_path):
    ok(run_finam("migrate", dsn=blank_dsn, cwd=tmp_path))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"type": "PortfolioOpened", "base_currency": "\xe9"}\n')
    result = run_finam("run", str(latin), "--portfolio", "x", dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 1 and "not UTF-8" in result.stderr
    result = run_finam("run", str(tmp_path / "missing.jsonl"), "--portfolio", "x", dsn=blank_dsn, cwd=tmp_path)
    assert result.returncode == 1 and "cannot read" in result.stderr
    assert events_in(blank_dsn) == 0
