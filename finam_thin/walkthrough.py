"""A short, printed tour of the event store: the main job until `finam demo` exists.

Each run uses a new stream ``walkthrough-N`` with ids derived from the stream
name, so every step's outcome is the same on every run and machine.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import NAMESPACE_URL, uuid5

from .database import create_pool
from .errors import EventIdConflict, InvalidArgument, WrongExpectedVersion
from .persistence import NewEvent, Snapshot
from .postgres import PostgresEventStore, PostgresSnapshotStore


def run(dsn: str, say: Callable[[str], None] = print) -> str:
    """Run the walkthrough on a migrated database; return the stream it used."""
    with create_pool(dsn, max_size=2) as pool:
        store = PostgresEventStore(pool)
        snapshots = PostgresSnapshotStore(pool)
        with pool.connection() as conn:
            runs = conn.execute("SELECT count(*) FROM finam.streams WHERE category = 'walkthrough'").fetchone()[0]
            schema = conn.execute("SELECT finam.schema_version()").fetchone()[0]
        stream = f"walkthrough-{runs + 1}"

        def event(label: str, type_: str, **payload) -> NewEvent:
            return NewEvent(uuid5(NAMESPACE_URL, f"finam:{stream}/{label}"), type_, payload,
                            {"correlation_id": str(uuid5(NAMESPACE_URL, f"finam:{stream}"))})

        say(f"Finam Core SQL API {schema}; walkthrough on stream {stream!r}")

        deposit = event("deposit", "CashDeposited", currency="USD", amount="100000.00")
        [result] = store.append(stream, deposit, expected_version=0)
        say(f"1. append_event CashDeposited, expected version 0 -> version {result.version}, "
            f"position {result.position}, duplicate={result.duplicate}")

        batch = [event("signal", "StrategySignalEvent", instrument="AAPL", side="BUY", quantity="10",
                       reference_price="189.25"),
                 event("order", "OrderRequested", instrument="AAPL", side="BUY", quantity="10")]
        results = store.append(stream, batch, expected_version=1)
        say("2. append batch of 2, expected version 1 -> versions "
            + ", ".join(str(r.version) for r in results))

        retried = store.append(stream, batch, expected_version=1)
        say("3. same batch again (a retry after a lost reply) -> versions "
            + ", ".join(str(r.version) for r in retried)
            + f", duplicate={all(r.duplicate for r in retried)}, nothing written")

        try:
            store.append(stream, event("late", "OrderCancelled", instrument="AAPL"), expected_version=1)
        except WrongExpectedVersion as error:
            say(f"4. stale writer, expected version 1 -> FC001 {error} "
                f"(actual={error.actual})")

        try:
            store.append(stream, NewEvent(deposit.id, "CashDeposited", {"currency": "USD", "amount": "1"}))
        except EventIdConflict as error:
            say(f"5. reused id with different payload -> FC002 {error}")

        try:
            store.append("", event("bad", "CashDeposited", amount="1"))
        except InvalidArgument as error:
            say(f"6. empty stream name -> FC003 {error}")

        say(f"7. stream_version({stream!r}) -> {store.stream_version(stream)}")
        say("8. read_stream:")
        for stored in store.read_stream(stream):
            say(f"     v{stored.version} pos {stored.position} {stored.type} {stored.payload}")

        saved = snapshots.save(Snapshot(stream, 3, {"cash": {"USD": "100000.00"}, "open_orders": 1}, 1))
        loaded = snapshots.load(stream, 1)
        say(f"9. save_snapshot at version 3 -> stored={saved}; load_snapshot -> version {loaded.version}, "
            f"state {loaded.state}")

        seen = mine = 0
        position = 0
        while page := store.read_all(after_position=position, max_count=500):
            seen += len(page)
            mine += sum(1 for e in page if e.stream == stream)
            position = page[-1].position
        say(f"10. read_all, pages of 500 from position 0 -> {seen} events in the store, {mine} of them in "
            f"{stream!r}; resume after position {position}")
        return stream
