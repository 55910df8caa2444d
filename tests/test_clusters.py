"""Offline correlation clusters (finam_thin.clusters): pure statistics, no database."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import numpy as np
import pytest

from finam_thin.clusters import cluster_map_event, correlation_clusters, correlation_distance, log_returns
from finam_thin.errors import InvalidArgument
from finam_thin.events import TRADING_EVENTS, ClusterMapPublished
from finam_thin.portfolio import PortfolioState
from finam_thin.events import PortfolioOpened

T0 = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def two_groups(seed: int, length: int = 300, noise: float = 0.002) -> dict[str, list[Decimal]]:
    """Instruments A0-A2 follow one seeded random walk, B0-B2 another, each with its own noise."""
    rng = random.Random(seed)
    walks = {"A": [0.0], "B": [0.0]}
    for _ in range(length - 1):
        for walk in walks.values():
            walk.append(walk[-1] + rng.gauss(0, 0.01))
    prices = {}
    for group, start in (("A", 100), ("B", 40)):
        for i in range(3):
            prices[f"{group}{i}"] = [Decimal(str(round(start * math.exp(x + rng.gauss(0, noise)), 2)))
                                     for x in walks[group]]
    return prices


def test_two_groups_of_instruments_land_in_two_clusters():
    clusters = correlation_clusters(two_groups(seed=7), threshold=0.5)
    assert clusters == {"A0": "cluster-1", "A1": "cluster-1", "A2": "cluster-1",
                        "B0": "cluster-2", "B1": "cluster-2", "B2": "cluster-2"}


def test_cluster_names_are_numbered_by_the_first_member_whatever_the_input_order():
    prices = two_groups(seed=11)
    renamed = {("Z" if k.startswith("A") else "C") + k[1:]: v for k, v in prices.items()}  # B group now first
    clusters = correlation_clusters(dict(reversed(list(renamed.items()))))
    assert clusters == {"C0": "cluster-1", "C1": "cluster-1", "C2": "cluster-1",
                        "Z0": "cluster-2", "Z1": "cluster-2", "Z2": "cluster-2"}
    assert list(clusters) == sorted(clusters)


def test_a_perfectly_correlated_pair_has_distance_zero_and_an_anticorrelated_pair_one():
    up = [Decimal(p) for p in ("100", "101", "99.5", "102", "103.3", "101.1")]
    double = [p * 2 for p in up]  # same log returns
    _, returns = log_returns({"X": up, "Y": double})
    distance = correlation_distance(returns)
    assert distance[0, 1] == pytest.approx(0.0, abs=1e-7) and distance[0, 0] == 0
    inverse = [Decimal(1) / p for p in up]  # log returns negated
    _, returns = log_returns({"X": up, "Y": inverse})
    assert correlation_distance(returns)[0, 1] == pytest.approx(1.0)
    assert correlation_clusters({"X": up, "Y": double}, threshold=0.01) == {"X": "cluster-1", "Y": "cluster-1"}


def test_uncorrelated_walks_stay_apart_and_a_flat_series_is_its_own_cluster():
    prices = two_groups(seed=3)
    prices["FLAT"] = [Decimal("10")] * len(prices["A0"])
    clusters = correlation_clusters(prices, threshold=0.5)
    assert clusters["FLAT"] not in {clusters["A0"], clusters["B0"]}
    assert clusters["A0"] != clusters["B0"]
    assert np.isfinite(correlation_distance(log_returns(prices)[1])).all()


def test_the_output_is_deterministic():
    first = correlation_clusters(two_groups(seed=5))
    assert all(correlation_clusters(two_groups(seed=5)) == first for _ in range(3))


def test_threshold_extremes():
    prices = two_groups(seed=9)
    assert set(correlation_clusters(prices, threshold=1.0).values()) == {"cluster-1"}
    assert len(set(correlation_clusters(prices, threshold=0.0).values())) == 6


def test_bad_inputs_are_refused():
    with pytest.raises(InvalidArgument):
        correlation_clusters({})
    with pytest.raises(InvalidArgument):
        correlation_clusters({"X": [Decimal(1), Decimal(2), Decimal(3)], "Y": [Decimal(1), Decimal(2)]})
    with pytest.raises(InvalidArgument):
        correlation_clusters({"X": [Decimal(1), Decimal(0), Decimal(3)]})
    with pytest.raises(InvalidArgument):
        correlation_clusters({"X": [1.0, 2.0, 3.0]})  # floats are not prices
    with pytest.raises(InvalidArgument):
        correlation_clusters(two_groups(seed=1), threshold=2)
    assert correlation_clusters({"X": [Decimal(1), Decimal(2), Decimal(3)]}) == {"X": "cluster-1"}


def test_the_published_event_carries_the_map_and_folds_into_the_state():
    clusters = correlation_clusters(two_groups(seed=7))
    event_id = uuid4()
    event = cluster_map_event(clusters, map_version=1, occurred_at=T0, event_id=event_id)
    assert isinstance(event, ClusterMapPublished) and event.event_id == event_id
    assert event.instruments == tuple(sorted(clusters))
    assert dict(zip(event.instruments, event.clusters)) == clusters
    assert TRADING_EVENTS.encode(event).payload["map_version"] == 1
    state = PortfolioState.fold([PortfolioOpened(occurred_at=T0, base_currency="USD"), event])
    assert state.clusters == clusters and state.cluster_map_version == 1
