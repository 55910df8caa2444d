"""Rebuilding a portfolio: snapshot (if any, of the right layout) + the events after it.

The seed's Deterministic Replay Model: 1. load the snapshot, 2. replay the
stream's events after it in version order, 3. rebuild ``PortfolioState``. The
rebuilt state's ``state_hash()`` always equals a full replay's. Snapshots are
taken every N events by ``SnapshotEveryN``, a bus handler, so after the commit
and off the append path.
"""

from __future__ import annotations

import itertools
import logging

from .contract import EventRegistry, RecordedEvent
from .events import TRADING_EVENTS
from .persistence import Snapshot
from .portfolio import STATE_SCHEMA_VERSION, PortfolioState
from .postgres import PostgresEventStore, PostgresSnapshotStore

log = logging.getLogger(__name__)

PORTFOLIO_CATEGORY = "portfolio"


def portfolio_stream(portfolio_id: str) -> str:
    """The stream holding every event of portfolio ``portfolio_id``: ``portfolio-<id>``."""
    return f"{PORTFOLIO_CATEGORY}-{portfolio_id}"


#: Events per page a replay reads (about 3 MB of rows; two pages are held while reading ahead). The
#: helper thread reading ahead needs the GIL to take a page in, which CPython hands over only every
#: switch interval (5 ms) while the fold runs: fewer, larger pages wait for it less often (replay of
#: 100,000 events, 2 cores: 0.86x the plain read with pages of 5000, 0.72x with pages of 1000).
REPLAY_PAGE_SIZE = 5000


class PortfolioRepository:
    """Loads portfolios from their streams (bootstrapping from snapshots) and saves snapshots."""

    def __init__(self, store: PostgresEventStore, snapshots: PostgresSnapshotStore,
                 registry: EventRegistry = TRADING_EVENTS, *, page_size: int = REPLAY_PAGE_SIZE) -> None:
        self.store = store
        self.snapshots = snapshots
        self.registry = registry
        self.page_size = page_size

    def load(self, stream: str, *, use_snapshot: bool = True, version: int | None = None) -> PortfolioState:
        """The portfolio at its stream's head (or at ``version``): the newest snapshot in layout
        ``STATE_SCHEMA_VERSION`` (one of another layout, or past ``version``, is ignored), then
        every later event in version order."""
        state = self._from_snapshot(stream) if use_snapshot else None
        if state is None or (version is not None and state.version > version):
            state = PortfolioState()
        return self.replay_onto(state, stream, version)

    def replay_onto(self, state: PortfolioState, stream: str, version: int | None = None) -> PortfolioState:
        """``state`` with the events of ``stream`` after ``state.version`` (up to ``version``) applied in order."""
        if version is not None and version <= state.version:
            return state
        wanted = None if version is None else version - state.version
        page_size = self.page_size if wanted is None else min(self.page_size, wanted)
        # Read ahead (the next page is fetched while this one is folded) when there is more than a page to fold.
        rows = self.store.iter_stream_json(stream, from_version=state.version + 1, page_size=page_size,
                                           read_ahead=wanted is None or wanted > page_size)
        decode = self.registry.decode_json  # from the stored JSON text straight to the event
        return state.apply_versioned((version, decode(event_id, type_name, payload, metadata))
                                     for event_id, type_name, version, payload, metadata
                                     in (rows if wanted is None else itertools.islice(rows, wanted)))

    def save_snapshot(self, stream: str, state: PortfolioState) -> bool:
        """Store ``state`` as the snapshot of ``stream`` at ``state.version`` (False when one as new is kept)."""
        if state.version == 0:
            return False
        return self.snapshots.save(Snapshot(stream, state.version, state.to_snapshot(), STATE_SCHEMA_VERSION))

    def _from_snapshot(self, stream: str) -> PortfolioState | None:
        snapshot = self.snapshots.load(stream, STATE_SCHEMA_VERSION)
        if snapshot is None:
            return None
        try:
            state = PortfolioState.from_snapshot(snapshot.state)
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            log.warning("snapshot of %s at version %s does not load (%s): rebuilding from events",
                        stream, snapshot.version, error)
            return None
        if state.version != snapshot.version:
            log.warning("snapshot of %s says version %s but holds %s: rebuilding from events",
                        stream, snapshot.version, state.version)
            return None
        return state


class SnapshotEveryN:
    """A bus handler that snapshots a portfolio at every multiple of ``every`` versions of its stream.

    Subscribe it with ``category=PORTFOLIO_CATEGORY``. For the event at version
    k·every it loads the portfolio at exactly that version (previous snapshot +
    the events since) and saves it; saving is idempotent, so re-running it after
    a crash is harmless.
    """

    def __init__(self, repository: PortfolioRepository, every: int = 100) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.repository = repository
        self.every = every

    def __call__(self, recorded: RecordedEvent) -> None:
        if recorded.version % self.every == 0:
            state = self.repository.load(recorded.stream, version=recorded.version)
            self.repository.save_snapshot(recorded.stream, state)
