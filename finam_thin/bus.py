"""EventBus: append first, then run the handlers — each committed event exactly once per handler.

The seed's flow, ``EventBus.publish()`` → ``PostgresEventStore.append()`` →
synchronous handlers, with these guarantees:

- **Append-first.** ``publish`` appends (one event or a batch, optional expected
  version) and returns from the store only after the commit; only then are
  handlers called, synchronously, in registration order for each event. No
  handler ever sees an uncommitted event. Nothing is asynchronous inside the
  write boundary.
- **Durable progress.** Each handler has a checkpoint in ``finam.checkpoints``:
  the ``read_all`` position of the last event it handled. Handlers follow the
  gap-safe ``read_all`` (or ``read_category``), so an event committed by any
  process is seen once, in commit-safe order.
- **Exactly-once effects.** A handler does not write: it returns ``Append``
  instructions. They are appended in one transaction together with the
  compare-and-set of the handler's checkpoint, so after a crash at any point an
  event's output is either fully written with the checkpoint past it, or not at
  all and the event is handled again. Output events built with
  ``DomainEvent.derived_from(cause, step)`` get ids derived from their cause, so
  even a second worker re-running the handler writes nothing twice.
- **At-least-once outside effects.** Whatever a handler does besides returning
  ``Append`` (an e-mail, an HTTP call, an in-memory projection) may happen
  again for the events since its last durable checkpoint after a crash: make
  such effects idempotent. Checkpoints of handlers without output are saved
  once per page.
- **Failures.** A failing handler never undoes the commit. The failure is
  logged and reported in the ``DispatchReport``, the handler's checkpoint stays
  before the failing event, and the handler is stopped for this dispatch (its
  later events wait, in order) and retried on the next ``publish`` or
  ``catch_up()``. An event that does not decode is such a failure — it is never
  skipped silently (a DBA may skip it deliberately with
  ``finam.advance_checkpoint``).
- **Restart.** ``catch_up()`` runs every handler from its checkpoint: events
  committed before a crash are handled after the restart, exactly once.
  ``run()`` keeps doing so, woken by ``NOTIFY finam_events`` with a polling
  fallback — for subscribers in another process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .contract import DomainEvent, EventRegistry, RecordedEvent
from .errors import InvalidArgument, WrongExpectedVersion
from .events import TRADING_EVENTS
from .persistence import AppendResult, StoredEvent, one_or_many
from .postgres import PostgresCheckpointStore, PostgresEventStore
from .subscription import Wakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Append:
    """A handler's output: ``events`` to append to ``stream`` (checked against ``expected_version`` if given)."""

    stream: str
    events: Sequence[DomainEvent]
    expected_version: int | None = None


HandlerResult = Append | Iterable[Append] | None
Handler = Callable[[RecordedEvent], HandlerResult]


@dataclass(frozen=True)
class HandlerFailure:
    """A handler raised on an event (or the event did not decode); its checkpoint stays before it."""

    handler: str
    event_id: object
    position: int
    error: BaseException


@dataclass
class DispatchReport:
    """What one dispatch did: events handled per handler, failures, and whether a published event
    was still unreadable when the wait for it ran out (it is handled on a later dispatch)."""

    handled: dict[str, int] = field(default_factory=dict)
    failures: list[HandlerFailure] = field(default_factory=list)
    pending: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.pending


@dataclass(frozen=True)
class Published:
    """The outcome of ``publish``: where each event landed, and what the handlers did."""

    appended: list[AppendResult]
    dispatch: DispatchReport


@dataclass
class _Subscription:
    name: str
    handler: Handler
    category: str | None
    stream: str | None = None
    from_end: bool = False
    end: int | None = None  # with from_end: the last event committed at the first dispatch


class _CheckpointMoved(Exception):
    """Another worker advanced this handler's checkpoint: reload it and continue from there."""


class EventBus:
    """Publishes events to the store and dispatches committed events to subscribed handlers."""

    def __init__(self, store: PostgresEventStore, checkpoints: PostgresCheckpointStore,
                 registry: EventRegistry = TRADING_EVENTS, *, page_size: int = 500,
                 visibility_timeout: float = 5.0, conflict_retries: int = 5) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.registry = registry
        self.page_size = page_size
        self.visibility_timeout = visibility_timeout
        self.conflict_retries = conflict_retries
        self._subscriptions: list[_Subscription] = []
        self._dispatch_lock = threading.RLock()
        self._dispatching = threading.local()

    # -- set-up -------------------------------------------------------------------

    def subscribe(self, name: str, handler: Handler, *, category: str | None = None, stream: str | None = None,
                  from_end: bool = False) -> None:
        """Call ``handler`` for every committed event (of ``category`` streams, or of one ``stream``, if given).

        ``name`` keys the handler's durable checkpoint: keep it stable across
        restarts. Handlers run in registration order. A handler without a
        checkpoint starts at the beginning of history, or with ``from_end`` at the
        events committed from its first dispatch on. Events of other streams are
        passed over without being decoded.
        """
        if not name or any(s.name == name for s in self._subscriptions):
            raise InvalidArgument(f"invalid argument: handler name {name!r} is empty or already subscribed")
        if stream is not None and category is None:
            category = stream.split("-", 1)[0]
        self._subscriptions.append(_Subscription(name, handler, category, stream, from_end))

    @property
    def handler_names(self) -> list[str]:
        return [s.name for s in self._subscriptions]

    # -- publish ------------------------------------------------------------------

    def publish(self, stream: str, events: DomainEvent | Sequence[DomainEvent],
                expected_version: int | None = None) -> Published:
        """Append ``events`` to ``stream`` (all or nothing), then — after the commit — run the handlers.

        It returns once the handlers have handled these events and every output
        they appended in turn (so the next publish is decided on a settled stream);
        while an older transaction elsewhere on the server hides them from
        read_all it waits, up to ``visibility_timeout``, then reports ``pending``.
        Raises what the append raises (WrongExpectedVersion, EventIdConflict,
        InvalidArgument), and then no handler runs. Handler failures do not
        raise: they are in the returned report. A publish from inside a handler
        only appends; the running dispatch picks its events up.
        """
        batch = one_or_many(events, DomainEvent, f"publish to {stream!r:.60} takes")
        appended = self.store.append(stream, [self.registry.encode(e) for e in batch], expected_version)
        if not self._subscriptions or getattr(self._dispatching, "active", False):
            self._appended(appended)
            return Published(appended, DispatchReport())
        return Published(appended, self._dispatch(wait_for=appended[-1].position))

    def catch_up(self) -> DispatchReport:
        """Run every handler over every committed event after its checkpoint (use on start-up).

        Events committed before the call but still hidden from read_all by an older
        open transaction (in any database of the server) are waited for, up to
        ``visibility_timeout``; still hidden then, the report is ``pending`` (not ok)
        and a later dispatch handles them. So an ok report means every event
        committed before the call was handled.
        """
        return self._dispatch(wait_for=self.store.last_position() or None)

    def run(self, stop: threading.Event, *, poll_interval: float = 1.0, listener_name: str | None = None) -> None:
        """Catch up, then keep catching up — woken by NOTIFY finam_events, polling every
        ``poll_interval`` seconds anyway — until ``stop`` is set. For out-of-process subscribers."""
        wakeup = Wakeup(self.store, listener_name or f"bus:{'+'.join(self.handler_names)}")
        try:
            while not stop.is_set():
                self.catch_up()
                wakeup.wait(poll_interval)
        finally:
            wakeup.close()

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self, wait_for: int | None) -> DispatchReport:
        """Run the handlers until every event up to ``wait_for`` — and every output the handlers
        appended meanwhile — is handled (None: only what is readable now)."""
        report = DispatchReport()
        deadline = None
        with self._dispatch_lock:
            self._dispatching.active = True
            self._dispatching.target = wait_for  # moved on by the handlers' outputs (see _handle)
            try:
                stopped: set[str] = set()
                reached = None  # the target last found readable
                while True:
                    progressed = False
                    for subscription in self._subscriptions:
                        if subscription.name not in stopped:
                            progressed |= self._drain(subscription, report, stopped)
                    if progressed:
                        deadline = None
                        continue
                    target = self._dispatching.target
                    if target is None or target == reached:
                        break
                    if self.store.is_readable(target):
                        reached = target  # it may have become readable after the last read: one more pass
                        continue
                    # Our events are committed but an older transaction elsewhere still
                    # hides them from read_all: wait for it, briefly.
                    if deadline is None:
                        deadline = time.monotonic() + self.visibility_timeout
                    if time.monotonic() >= deadline:
                        report.pending = True
                        log.warning("event at position %s not yet readable after %.1fs; "
                                    "handlers will see it on a later dispatch", target, self.visibility_timeout)
                        break
                    time.sleep(0.005)
            finally:
                self._dispatching.active = False
                self._dispatching.target = None
        return report

    def _appended(self, results: Sequence[AppendResult]) -> None:
        """A running dispatch that waits for its events waits for these too (our latest commit)."""
        if results and getattr(self._dispatching, "target", None) is not None:
            self._dispatching.target = results[-1].position

    def _page(self, subscription: _Subscription, after: int) -> list[StoredEvent]:
        if subscription.category is None:
            return self.store.read_all(after_position=after, max_count=self.page_size)
        return self.store.read_category(subscription.category, after_position=after, max_count=self.page_size)

    def _drain(self, subscription: _Subscription, report: DispatchReport, stopped: set[str]) -> bool:
        """Handle every readable event after the handler's checkpoint; True if any was handled."""
        name = subscription.name
        progressed = False
        while True:
            durable = self.checkpoints.load(name)
            if durable == 0 and subscription.from_end:
                # the end = the last event committed now: wait until read_all passes it (an older
                # transaction elsewhere may still hide it) rather than start before it
                if subscription.end is None:
                    subscription.end = self.store.last_position(subscription.category)
                head = subscription.end
                if head and not self.store.is_readable(head):
                    return progressed
                subscription.from_end = False  # only a handler that never ran starts at the end
                if head:
                    self.checkpoints.advance(name, 0, head)  # False: another worker started it first
                    continue
            page = self._page(subscription, durable)
            if not page:
                return progressed
            seen = durable  # last event handled in memory; ``durable`` is what the database holds
            try:
                for stored in page:
                    if subscription.stream is not None and stored.stream != subscription.stream:
                        seen = stored.position  # not this handler's stream: passed over, never decoded
                        continue
                    try:
                        recorded = self.registry.decode(stored)
                        outputs = self._handle(subscription, recorded, durable, stored.position)
                    except _CheckpointMoved:
                        raise
                    except Exception as error:  # noqa: BLE001 - any handler error is reported, never fatal
                        self._flush(name, durable, seen)
                        report.failures.append(HandlerFailure(name, stored.id, stored.position, error))
                        log.error("handler %r failed on event %s at position %s: %s", name, stored.id,
                                  stored.position, error, exc_info=error)
                        stopped.add(name)
                        return True
                    if outputs:
                        durable = stored.position
                    seen = stored.position
                    report.handled[name] = report.handled.get(name, 0) + 1
                    progressed = True
                self._flush(name, durable, seen)
            except _CheckpointMoved:
                log.info("checkpoint of %r was advanced by another worker; continuing from there", name)
                continue
            if len(page) < self.page_size:
                return progressed

    def _handle(self, subscription: _Subscription, recorded: RecordedEvent, durable: int, position: int) -> bool:
        """Call the handler; append its output with the checkpoint in one transaction. True if it had output."""
        for attempt in range(self.conflict_retries + 1):
            outputs = _as_appends(subscription.handler(recorded))
            if not outputs:
                return False
            encoded = [(a.stream, [self.registry.encode(e) for e in a.events], a.expected_version)
                       for a in outputs]
            try:
                appended: list[AppendResult] = []
                with self.store.pool.connection() as connection, connection.transaction():
                    if not self.checkpoints.advance(subscription.name, durable, position, connection=connection):
                        raise _CheckpointMoved
                    for stream, events, expected_version in encoded:
                        if events:
                            appended += self.store.append(stream, events, expected_version, connection=connection)
                self._appended(appended)
                return True
            except WrongExpectedVersion:
                if attempt == self.conflict_retries:
                    raise
                log.info("handler %r lost a race on its output (attempt %d): re-running it", subscription.name,
                         attempt + 1)
        raise AssertionError("unreachable")

    def _flush(self, name: str, durable: int, seen: int) -> None:
        """Save the checkpoint of events handled without output (compare-and-set)."""
        if seen != durable and not self.checkpoints.advance(name, durable, seen):
            raise _CheckpointMoved


def _as_appends(result: HandlerResult) -> list[Append]:
    if result is None:
        return []
    if isinstance(result, Append):
        return [result]
    appends = list(result)
    for item in appends:
        if not isinstance(item, Append):
            raise InvalidArgument(f"invalid argument: a handler returned {type(item).__name__}, expected Append")
    return appends
