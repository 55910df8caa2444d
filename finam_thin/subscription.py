"""Following the store: every committed event, exactly once, woken by NOTIFY.

Storage code only. ``EventTail`` pages through the gap-safe ``finam.read_all``
from a position. When it has caught up it waits for a ``finam_events``
notification — it registers itself with ``finam.register_listener`` and renews
the registration at half its ttl, so writers only pay for NOTIFY while someone
listens — and polls every ``poll_interval`` seconds anyway: a notification is a
hint, never the source of truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg

from .persistence import StoredEvent
from .postgres import PostgresEventStore

CHANNEL = "finam_events"


class Wakeup:
    """Waits for a ``finam_events`` notification or a timeout, whichever comes first.

    The first wait opens a dedicated LISTEN connection and registers ``name``
    with ``finam.register_listener`` (renewed at half its ttl), so writers only
    pay for NOTIFY while someone listens. ``close()`` withdraws the registration.
    """

    def __init__(self, store: PostgresEventStore, name: str, *, ttl_seconds: float = 60.0) -> None:
        self.store = store
        self.name = name
        self.ttl_seconds = ttl_seconds
        self._listener: psycopg.Connection | None = None
        self._renew_at = 0.0

    def wait(self, timeout: float) -> bool:
        """True when a notification arrived within ``timeout`` seconds (a hint: always read anyway)."""
        self._ensure_listening()
        for _ in self._listener.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        """Stop listening and withdraw the registration."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self.store.unregister_listener(self.name)

    def _ensure_listening(self) -> None:
        now = time.monotonic()
        if self._listener is None:
            self._listener = psycopg.connect(self.store.pool.conninfo, autocommit=True)
            self._listener.execute(f"LISTEN {CHANNEL}")
        if now >= self._renew_at:
            self.store.register_listener(self.name, self.ttl_seconds)
            self._renew_at = now + self.ttl_seconds / 2


class EventTail:
    """Reads every event committed after ``after_position``, in read_all's order, once each.

    ``position`` is the last delivered event's position: persist it to resume
    after a restart. Use as a context manager (``close()`` unregisters).
    """

    def __init__(self, store: PostgresEventStore, name: str, *, after_position: int = 0,
                 page_size: int = 500, ttl_seconds: float = 60.0, poll_interval: float = 1.0,
                 listen: bool = True) -> None:
        self.store = store
        self.name = name
        self.position = after_position
        self.page_size = page_size
        self.ttl_seconds = ttl_seconds
        self.poll_interval = poll_interval
        self.listen = listen
        self._wakeup = Wakeup(store, name, ttl_seconds=ttl_seconds)

    def __enter__(self) -> EventTail:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def poll(self, timeout: float | None = None) -> list[StoredEvent]:
        """The next page of events; when caught up, wait (up to ``timeout``, default
        ``poll_interval``) for a notification or the poll interval, then read once more."""
        page = self._next_page()
        if page:
            return page
        self._wait(self.poll_interval if timeout is None else timeout)
        return self._next_page()

    def __iter__(self) -> Iterator[StoredEvent]:
        """Every event from ``position`` on, forever (stop by breaking out and closing)."""
        while True:
            yield from self.poll()

    def close(self) -> None:
        """Stop listening and withdraw the registration."""
        self._wakeup.close()

    def _next_page(self) -> list[StoredEvent]:
        page = self.store.read_all(after_position=self.position, max_count=self.page_size)
        if page:
            self.position = page[-1].position
        return page

    def _wait(self, timeout: float) -> None:
        if self.listen:
            self._wakeup.wait(timeout)
        else:
            time.sleep(timeout)
