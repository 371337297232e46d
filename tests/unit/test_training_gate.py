"""The training modules' gate inputs: the bootstrapped AUC and the forecaster candidates."""

import math

import numpy as np
import pandas as pd
import pytest

from ml.anomaly.training import weighted_auc
from ml.forecast.training import ForecastSpec, evaluate_forecasters
from ml.promotion import bootstrap_weights


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_weighted_auc_with_unit_weights_is_the_rank_auc() -> None:
    rng = np.random.default_rng(0)
    # Rounded so that ties occur, as they do at the calibrated scores' floor and ceiling.
    scores = np.round(rng.normal(size=300), 1)
    positive = rng.random(300) < 0.2
    scores[positive] += 1.0
    unit = rng.integers(0, 6, 300)
    got = weighted_auc(scores, positive, unit, np.ones((1, 6)))
    assert got[0] == pytest.approx(_pairwise_auc(scores, positive), abs=1e-12)


def test_weighted_auc_equals_the_auc_of_the_resampled_units() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=200)
    positive = rng.random(200) < 0.3
    unit = rng.integers(0, 5, 200)
    weights = bootstrap_weights(5, resamples=4, seed=2)
    got = weighted_auc(scores, positive, unit, weights)
    for row, value in zip(weights, got, strict=True):
        drawn = np.concatenate(
            [np.flatnonzero(unit == u).repeat(1) for u in range(5) for _ in range(row[u])]
        )
        assert value == pytest.approx(_pairwise_auc(scores[drawn], positive[drawn]), abs=1e-12)


def test_weighted_auc_without_positives_is_undefined() -> None:
    got = weighted_auc(
        np.arange(4.0), np.zeros(4, dtype=bool), np.zeros(4, dtype=int), np.ones((1, 1))
    )
    assert math.isnan(got[0])


def _hourly(seed: int, hours: int = 24 * 12) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-10-01", periods=hours, freq="h", tz="UTC")
    weekly = np.where(index.dayofweek >= 5, 0.5, 1.0)
    daily = 1 + 0.5 * np.sin(2 * np.pi * np.arange(hours) / 24)
    return pd.Series(rng.poisson(200 * daily * weekly).astype(float), index=index, name="y")


SERIES = [_hourly(seed) for seed in range(6)]
NAIVE = ForecastSpec(("seasonal_naive",))


def test_the_seasonal_naive_alone_is_one_candidate_and_wins() -> None:
    # The configured model equal to the baseline is backtested once, and a fresh install
    # (no champion) still gets a winner.
    training = evaluate_forecasters(
        SERIES, {"baseline": NAIVE, "candidate": NAIVE}, horizon=24, n_origins=2
    )
    assert training.same_as == {"candidate": "baseline"}
    assert training.decision.winner == "baseline"
    assert training.winner == NAIVE
    assert math.isfinite(training.metrics["baseline"]["mase"])


def test_forecast_verdicts_are_deterministic() -> None:
    candidates = {"baseline": NAIVE, "candidate": ForecastSpec(("adaptive_naive",))}
    first = evaluate_forecasters(SERIES, candidates, horizon=24, n_origins=2)
    second = evaluate_forecasters(SERIES, candidates, horizon=24, n_origins=2)
    assert first.decision == second.decision
    assert first.decision.reason == second.decision.reason
    (comparison,) = first.decision.comparisons
    assert comparison.challenger == "candidate" and comparison.noise > 0
    # The verdict follows the rule: the adaptive naive takes over only beyond 2 noise sds.
    expected = "candidate" if comparison.advantage > 2 * comparison.noise else "baseline"
    assert first.decision.winner == expected


def test_the_champion_configuration_is_the_incumbent() -> None:
    adaptive = ForecastSpec(("adaptive_naive",))
    training = evaluate_forecasters(
        SERIES,
        {"baseline": NAIVE, "candidate": adaptive, "champion": adaptive},
        horizon=24,
        n_origins=2,
        incumbent="champion",
    )
    assert training.same_as == {"champion": "candidate"}
    assert set(training.specs) == {"baseline", "candidate"}


def test_forecast_spec_round_trips_through_the_registered_config() -> None:
    spec = ForecastSpec(("adaptive_naive", "sarima"), season=24, weekly_season=168, level=0.9)
    config = spec.config(horizon=48)
    assert config["horizon"] == 48
    assert ForecastSpec.from_config(config) == spec
    assert spec.complexity > NAIVE.complexity
