"""What the stores exchange with their callers: plain, immutable records.

Storage code only: no business rules. Payloads and metadata are JSON objects;
money and quantities travel as strings (or Decimal, which is written as a
string); numbers read back with a fraction are Decimal, never float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from .errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its id is the idempotency key and never changes."""

    id: UUID
    type: str
    payload: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: version within its stream, global position, commit-side metadata.

    Immutable like the other records; a msgspec Struct rather than a dataclass because
    replay builds one per row (5x cheaper to construct, and no cycle to track).
    """

    id: UUID
    stream: str
    type: str
    version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    position: int
    category: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended event landed; ``duplicate`` is True when it was already stored (a retry)."""

    id: UUID
    version: int
    position: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stream's folded state at ``version``, in state layout ``schema_version``."""

    stream: str
    version: int
    state: dict[str, Any]
    schema_version: int
    created_at: datetime | None = None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


#: ``\u0000`` escaped in JSON text (an even run of backslashes before it would make it literal text).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text or in jsonb, or None when it can.

    PostgreSQL text and jsonb hold neither the NUL character (``\\u0000``) nor lone
    surrogates (they are not UTF-8); the driver or the server would refuse them
    with an error of their own, so the stores and events refuse them first (FC003).
    """
    if "\x00" in value:
        return f"contains a NUL character (\\u0000) at index {value.index(chr(0))}, which PostgreSQL cannot store"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (f"is not valid Unicode: lone surrogate {value[error.start]!r} at index {error.start} "
                    "(not encodable as UTF-8)")
    return None


#: The store's JSON decoder (``json_loads``, and the psycopg loaders'). msgspec decodes the same JSON to
#: the same values as json.JSONDecoder(parse_float=Decimal) (big integers stay int, a fraction or exponent
#: becomes Decimal, the same depth limit), from bytes, 3-5x faster.
JSON_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def json_loads(text: str | bytes) -> Any:
    """JSON decoding for the store: numbers with a fraction or exponent become Decimal, never float."""
    return JSON_DECODER.decode(text)


#: One encoder for every call (``json.dumps`` with options builds a new one each time): same output.
_JSON_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False, sort_keys=True,
                                 separators=(",", ":"), ensure_ascii=False)

#: What an argument is called in an error message: the name, or a function that spells it out
#: only when a message needs it (an event id's text costs more than the check it names).
Described = str | Callable[[], str]


def described(what: Described) -> str:
    """The name of an argument for an error message."""
    return what if isinstance(what, str) else what()


_INT64 = 2 ** 63


def _flat_json(value: Any) -> str | None:
    """The canonical JSON text of a dict whose keys are str and values str, bool, None or 64-bit int,
    written by msgspec (the stdlib encoder's very text, 3x faster); None for anything else."""
    if type(value) is not dict:
        return None
    if not value:
        return "{}"  # the usual metadata
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or not (kind is str or item is None or kind is bool
                                        or (kind is int and -_INT64 <= item < _INT64)):
            return None
    try:
        return msgspec.json.encode(value, order="sorted").decode()
    except UnicodeEncodeError:
        return None  # a lone surrogate: the general path says where


def encode_json_object(value: Any, what: Described) -> str:
    """Canonical JSON text of a mapping (sorted keys, Decimal as string); InvalidArgument otherwise.

    Refused (FC003, before anything reaches the database): a value that is not a
    mapping; NaN, Infinity and values JSON has no form for; text PostgreSQL cannot
    store (``\\u0000``, lone surrogates) in a key or a value; nesting deeper than
    Python's recursion limit.
    """
    text = _flat_json(value)
    if text is None:
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"invalid argument: {described(what)} must be a mapping (a JSON object), "
                                  f"got {type(value).__name__}")
        try:
            text = _JSON_ENCODER.encode(value)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"invalid argument: {described(what)} is not valid JSON: {error}") from error
        except RecursionError:
            raise InvalidArgument(f"invalid argument: {described(what)} is nested too deeply to encode "
                                  "as JSON") from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise InvalidArgument(f"invalid argument: {described(what)} contains a NUL character (\\u0000), "
                              "which PostgreSQL jsonb cannot store")
    if not text.isascii():
        problem = text_problem(text)
        if problem is not None:
            raise InvalidArgument(f"invalid argument: {described(what)} {problem}")
    return text


def one_or_many(events: Any, kind: type, expectation: str) -> list:
    """``events`` as a list: one ``kind`` or an iterable of items (a str, bytes or mapping is not one).

    Anything else is InvalidArgument (FC003): "invalid argument: {expectation} a {kind} or a sequence
    of them, got {type}". The items themselves are checked by the caller.
    """
    if isinstance(events, kind):
        return [events]
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise InvalidArgument(f"invalid argument: {expectation} a {kind.__name__} or a sequence of them, "
                              f"got {type(events).__name__}")
    return list(events)
