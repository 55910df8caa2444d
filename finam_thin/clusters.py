"""Correlation clusters, computed offline from a price history and published as a versioned event.

This is the one place in Finam Core where floats are used: the prices (Decimal)
are converted to float here, and only here, to compute statistics — log
returns, a Pearson correlation matrix, the correlation distance
``sqrt((1 − ρ) / 2)`` and an average-linkage hierarchical clustering (SciPy).
What leaves this module is exact data: a mapping of instrument → cluster name,
and a ``ClusterMapPublished`` event carrying it.

Clustering never runs inside the fold or the risk check: the portfolio folds the
published ``ClusterMapPublished`` into ``PortfolioState.clusters`` and the risk
engine caps gross exposure per cluster from there. Publishing a new map is an
explicit, versioned act (``map_version`` strictly increasing per portfolio).

Determinism: the same prices and threshold give the same clusters on any machine
(instruments are processed in sorted order; cluster names ``cluster-1``, … are
numbered by the alphabetically first member of each cluster, so they do not
depend on SciPy's internal label numbering).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from .errors import InvalidArgument
from .events import ClusterMapPublished

#: Default distance threshold: instruments closer than this (ρ above ≈ 0.5) end up together.
DEFAULT_THRESHOLD = 0.5


def log_returns(prices: Mapping[str, Sequence[Decimal]]) -> tuple[list[str], np.ndarray]:
    """Instruments (sorted) and their log returns as a (n_instruments, n_returns) float matrix.

    The Decimal → float conversion happens here, for statistics only. Every series must have
    the same length (at least 3 prices) and only positive prices.
    """
    names = sorted(prices)
    if not names:
        raise InvalidArgument("invalid argument: correlation_clusters needs at least one instrument")
    lengths = {len(prices[name]) for name in names}
    if len(lengths) != 1:
        raise InvalidArgument(f"invalid argument: price series have different lengths {sorted(lengths)}")
    length = lengths.pop()
    if length < 3:
        raise InvalidArgument(f"invalid argument: need at least 3 prices per instrument, got {length}")
    rows = []
    for name in names:
        series = prices[name]
        if any(not isinstance(p, Decimal) or not p.is_finite() or p <= 0 for p in series):
            raise InvalidArgument(f"invalid argument: prices of {name} must be positive finite Decimals")
        levels = np.array([float(p) for p in series], dtype=np.float64)  # floats: statistics only
        rows.append(np.diff(np.log(levels)))
    return names, np.vstack(rows)


def correlation_distance(returns: np.ndarray) -> np.ndarray:
    """The matrix of correlation distances ``sqrt((1 − ρ) / 2)`` between the rows of ``returns``.

    A series that does not move has no defined correlation: it is treated as uncorrelated
    (ρ = 0, distance ≈ 0.707) with every other series. The diagonal is 0.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.corrcoef(returns) if returns.shape[0] > 1 else np.ones((1, 1))
    rho = np.atleast_2d(rho)
    rho = np.nan_to_num(rho, nan=0.0)
    rho = np.clip(rho, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    distance = np.sqrt((1.0 - rho) / 2.0)
    distance = (distance + distance.T) / 2.0  # exactly symmetric
    np.fill_diagonal(distance, 0.0)
    return distance


def correlation_clusters(prices: Mapping[str, Sequence[Decimal]],
                         threshold: float = DEFAULT_THRESHOLD) -> dict[str, str]:
    """Instrument → cluster name, from the correlation of the instruments' log returns.

    Average-linkage hierarchical clustering on the correlation distance, cut at
    ``threshold`` (a cluster's members are on average closer than it). Names are
    ``cluster-1``, ``cluster-2``, … numbered by each cluster's alphabetically first
    member; the result is sorted by instrument.
    """
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise InvalidArgument(f"invalid argument: threshold must be a number in [0, 1], got {threshold!r}")
    names, returns = log_returns(prices)
    if len(names) == 1:
        return {names[0]: "cluster-1"}
    distance = correlation_distance(returns)
    tree = linkage(squareform(distance, checks=False), method="average")
    labels = fcluster(tree, t=threshold, criterion="distance")
    members: dict[int, list[str]] = {}
    for name, label in zip(names, labels):
        members.setdefault(int(label), []).append(name)
    ordered = sorted(members.values(), key=lambda group: group[0])  # names are sorted: group[0] is the first
    return dict(sorted((name, f"cluster-{index}") for index, group in enumerate(ordered, 1) for name in group))


def cluster_map_event(clusters: Mapping[str, str], *, map_version: int, occurred_at: datetime,
                      event_id: UUID | None = None) -> ClusterMapPublished:
    """The ``ClusterMapPublished`` event of ``clusters`` (instruments sorted), version ``map_version``.

    Pass ``event_id`` for a deterministic id (e.g. a uuid5 of the stream); otherwise the
    event draws a random one, as any originating event does.
    """
    instruments = tuple(sorted(clusters))
    fields = {"event_id": event_id} if event_id is not None else {}
    return ClusterMapPublished(occurred_at=occurred_at, map_version=map_version, instruments=instruments,
                               clusters=tuple(clusters[name] for name in instruments), **fields)


def distance_of(rho: float) -> float:
    """The correlation distance of a correlation ``rho``: sqrt((1 − ρ) / 2) (0 for ρ = 1, 1 for ρ = −1)."""
    return math.sqrt((1.0 - rho) / 2.0)
