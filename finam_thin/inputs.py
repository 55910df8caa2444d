"""``finam run``: a user's own prices and signals, read from JSONL or CSV, checked completely before anything is written.

File formats (one event per line; blank lines and lines starting with ``#`` are skipped):

- JSONL (``.jsonl``, ``.ndjson``, ``.json``): an object with ``type`` and the event's
  fields, e.g. ``{"type": "MarkPriceUpdated", "occurred_at": "2026-11-24T14:30:00Z",
  "instrument": "AAPL", "price": "189.25"}``. Decimals may be strings (exact) or JSON
  numbers (read as Decimal, never float).
- CSV (``.csv``): a header row with ``type`` and any field names; an empty cell means
  "not given" (the field's default); list fields (``reason_codes``, ``instruments``,
  ``clusters``) are ``;``-separated; booleans are ``true``/``false``.

Types a file may contain: the facts that enter from outside — ``PortfolioOpened``,
``InstrumentRegistered``, ``CashDeposited``, ``CashWithdrawn``, ``FxRateUpdated``,
``MarkPriceUpdated``, ``StrategySignalEvent``, ``TradingStateChanged``,
``ClusterMapPublished``. Orders, fills and risk decisions are the engine's to write.

Every line is parsed, validated and folded onto the portfolio as it stands before
the first event is published; any problem is an ``InputError`` (FC003) listing each
bad line by number, and nothing is written. Event ids derive from the stream, the
line number and the line's text, so running the same file again is a no-op.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from .contract import DomainEvent
from .errors import FinamError, InvalidArgument
from .events import (
    TRADING_EVENTS,
    CashDeposited,
    CashWithdrawn,
    ClusterMapPublished,
    FxRateUpdated,
    InstrumentRegistered,
    MarkPriceUpdated,
    PortfolioOpened,
    StrategySignalEvent,
    TradingStateChanged,
)
from .portfolio import PortfolioState

INPUT_TYPES = frozenset(cls.type_name for cls in (
    PortfolioOpened, InstrumentRegistered, CashDeposited, CashWithdrawn, FxRateUpdated, MarkPriceUpdated,
    StrategySignalEvent, TradingStateChanged, ClusterMapPublished))
LIST_FIELDS = frozenset({"reason_codes", "instruments", "clusters"})
INPUT_NAMESPACE = UUID("0b7f5e3c-9a1d-4c2e-8f3b-5d6a7e8f9a0b")
MAX_REPORTED = 20


class InputError(InvalidArgument):
    """FC003: lines of an input file that cannot be used, each with its number; nothing was written."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        shown = problems[:MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"invalid argument: {path}: {len(problems)} bad line(s), nothing was written:\n"
                         + "\n".join(f"  line {line}: {message}" for line, message in shown) + more)
        self.path = path
        self.problems = problems


@dataclass(frozen=True)
class InputEvent:
    """An event read from a file, with the line it came from."""

    line: int
    event: DomainEvent


def read_events(path: Path, stream: str) -> list[InputEvent]:
    """Every event of the file, or InputError listing every bad line."""
    events: list[InputEvent] = []
    problems: list[tuple[int, str]] = []
    for line, text, fields in _records(path, problems):
        try:
            type_name = fields.pop("type", None)
            if not isinstance(type_name, str) or not type_name:
                raise InvalidArgument("a 'type' is required")
            if type_name not in INPUT_TYPES:
                raise InvalidArgument(f"type {type_name!r} cannot come from a file "
                                      f"(allowed: {', '.join(sorted(INPUT_TYPES))})")
            event_id = uuid5(INPUT_NAMESPACE, f"{stream}\n{line}\n{text}")
            events.append(InputEvent(line, TRADING_EVENTS.build(type_name, _canonical(fields), event_id=event_id)))
        except InvalidArgument as error:
            problems.append((line, str(error).removeprefix("invalid argument: ")))
    if problems:
        raise InputError(path, problems)
    if not events:
        raise InputError(path, [(0, "the file holds no events")])
    return events


def check_against(state: PortfolioState, events: list[InputEvent], path: Path) -> PortfolioState:
    """Fold ``events`` onto a copy of ``state``: InputError with the line of the first event that does not fit."""
    projected = PortfolioState.from_snapshot(state.to_snapshot())
    for item in events:
        try:
            projected.apply(item.event)
        except FinamError as error:
            raise InputError(path, [(item.line, str(error))]) from None
    return projected


def _records(path: Path, problems: list[tuple[int, str]]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, raw text, fields) per non-blank line; unreadable lines go to ``problems``."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidArgument(f"invalid argument: cannot read {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise InputError(path, [(line, f"not UTF-8 text ({error.reason} at byte {error.start} of the file; "
                                       f"a file cut short in a multi-byte character ends this way)")]) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(path, [(line, "contains a NUL character (\\u0000): not a text file")])
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(text, problems)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl_records(text, problems)
    else:
        raise InvalidArgument(f"invalid argument: {path}: use a .jsonl or .csv file")


def _jsonl_records(text: str, problems: list[tuple[int, str]]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    for line, content in enumerate(text.splitlines(), 1):
        stripped = content.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError as error:
            problems.append((line, f"not valid JSON ({error})"))
            continue
        if not isinstance(value, dict):
            problems.append((line, f"expected a JSON object, got {type(value).__name__}"))
            continue
        yield line, stripped, value


def _csv_records(text: str, problems: list[tuple[int, str]]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    lines = text.splitlines()
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            if "type" not in header or len(set(header)) != len(header) or "" in header:
                problems.append((line, "the header must name each column once, including 'type'"))
                return
            continue
        if len(row) != len(header):
            problems.append((line, f"{len(row)} cells, the header has {len(header)}"))
            continue
        fields: dict[str, Any] = {}
        for name, cell in zip(header, row):
            cell = cell.strip()
            if cell == "":
                continue
            if name in LIST_FIELDS:
                fields[name] = [item.strip() for item in cell.split(";") if item.strip()]
            elif cell.lower() in ("true", "false"):
                fields[name] = cell.lower() == "true"
            else:
                fields[name] = cell
        yield line, lines[line - 1] if line - 1 < len(lines) else ",".join(row), fields


def _canonical(fields: dict[str, Any]) -> dict[str, Any]:
    """Numbers given as JSON numbers become decimal strings; an int stays an int where an int is meant."""
    result: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, Decimal):
            result[name] = str(value)
        elif name == "map_version" and isinstance(value, str) and value.isdigit():
            result[name] = int(value)  # CSV cells are text
        elif isinstance(value, int) and not isinstance(value, bool) and name != "map_version":
            result[name] = str(value)
        else:
            result[name] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
