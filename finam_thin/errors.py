"""Exceptions of the Finam Core client, one per documented SQLSTATE.

Every error the SQL API raises carries a SQLSTATE of class FC; the client maps
each one to its own exception class so callers branch on types, and clients in
other languages branch on the same codes (see db/API.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class FinamError(Exception):
    """Base of every Finam Core error; ``sqlstate`` is its documented code."""

    sqlstate: str | None = None


class WrongExpectedVersion(FinamError):
    """FC001: the stream is not at the version the writer expected.

    ``stream``, ``expected`` and ``actual`` say which stream and versions; a
    writer that retries reads the stream up to ``actual`` and decides again.
    """

    sqlstate = "FC001"

    def __init__(self, message: str, *, stream: str | None = None,
                 expected: int | None = None, actual: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream
        self.expected = expected
        self.actual = actual


class EventIdConflict(FinamError):
    """FC002: an event id is already stored with different content (or a batch partly overlaps)."""

    sqlstate = "FC002"


class InvalidArgument(FinamError, ValueError):
    """FC003: an argument is invalid; nothing was written."""

    sqlstate = "FC003"


class HistoryIsImmutable(FinamError):
    """FC004: stored events cannot be updated, deleted or truncated."""

    sqlstate = "FC004"


class SnapshotConflict(FinamError):
    """FC005: a snapshot is outside the stream's versions or disagrees with the stored one."""

    sqlstate = "FC005"


ERRORS_BY_SQLSTATE: dict[str, type[FinamError]] = {
    cls.sqlstate: cls
    for cls in (WrongExpectedVersion, EventIdConflict, InvalidArgument, HistoryIsImmutable, SnapshotConflict)
}


def from_database_error(error: psycopg.Error) -> FinamError | None:
    """The Finam exception for a database error with an FC SQLSTATE, else None."""
    cls = ERRORS_BY_SQLSTATE.get(error.sqlstate or "")
    if cls is None:
        return None
    message = error.diag.message_primary or str(error)
    if cls is WrongExpectedVersion:
        detail = _json_detail(error.diag.message_detail)
        return WrongExpectedVersion(message, stream=detail.get("stream"),
                                    expected=detail.get("expected"), actual=detail.get("actual"))
    return cls(message)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise database errors with an FC SQLSTATE as their Finam exception."""
    try:
        yield
    except psycopg.Error as error:
        finam_error = from_database_error(error)
        if finam_error is None:
            raise
        raise finam_error from error


def _json_detail(detail: str | None) -> dict:
    try:
        value = json.loads(detail or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
