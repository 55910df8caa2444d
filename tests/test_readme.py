"""The README's Python engine example runs as printed, against a fresh database."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO_ROOT

from finam_thin.events import TRADING_EVENTS
from finam_thin.portfolio import PortfolioState

MARKER = "<!-- tested: tests/test_readme.py"


def readme_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(re.escape(MARKER) + r".*?-->\s*```python\n(.*?)```", text, flags=re.S)


def test_the_engine_example_publishes_reacts_and_rebuilds(dsn, store):
    (block,) = readme_blocks()
    result = subprocess.run([sys.executable, "-c", block], env={**os.environ, "POSTGRES_DSN": dsn},
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    version, hash_text = re.fullmatch(r"(\d+) \[OpenOrder\(.*\)\] ([0-9a-f]{64})\n", result.stdout).groups()
    rows = store.read_stream("portfolio-42")
    assert [r.type for r in rows] == ["PortfolioOpened", "CashDeposited", "InstrumentRegistered",
                                      "StrategySignalEvent", "OrderRequested"]
    assert int(version) == len(rows)
    replayed = PortfolioState.fold(TRADING_EVENTS.decode(r) for r in rows)
    assert replayed.state_hash() == hash_text
    assert [o.status for o in replayed.open_orders.values()] == ["requested"]
