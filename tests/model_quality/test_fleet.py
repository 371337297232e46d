"""The detector fleet: fitted once, scores new hours without refitting, exactly like its members."""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from ml.anomaly.fleet import DetectorSpec, Fleet, fleet_scores_frame

TRAIN, NEW = 24 * 14, 24 * 3
SPEC = DetectorSpec(network_epochs=2, min_train_points=72)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _series(seed: int, hours: int = TRAIN + NEW) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-10-01", periods=hours, freq="h", tz="UTC")
    daily = 1 + 0.5 * np.sin(2 * np.pi * np.arange(hours) / 24)
    return pd.Series(rng.poisson(200 * daily).astype(float), index=index)


@pytest.fixture(scope="module")
def fitted() -> tuple[Fleet, dict[tuple[str, str], pd.Series]]:
    series = {(f"t/app-{i}/m", "request_count"): _series(i) for i in range(3)}
    series[("t/app-1/m", "request_count")].iloc[TRAIN + 40] += 2000.0
    fleet = Fleet.fit(SPEC, {k: v.iloc[:TRAIN] for k, v in series.items()})
    return fleet, series


def test_one_network_is_shared_by_every_series(fitted) -> None:
    fleet, _ = fitted
    networks = {
        id(member.network)
        for detector in fleet.detectors.values()
        for member in detector.members
        if member.name == "lstm_autoencoder"
    }
    assert len(networks) == 1 and fleet.network is not None


def test_scoring_reuses_the_fitted_detectors_and_flags_the_spike(fitted) -> None:
    fleet, series = fitted
    scores = fleet.score(series, hours=NEW)
    assert (scores.reused, scores.fitted, scores.skipped) == (3, 0, [])
    frame = fleet_scores_frame(scores)
    flagged = frame[frame["is_anomaly"]]
    assert list(flagged["series_id"]) == ["t/app-1/m"]
    assert flagged["bucket_at"].iloc[0] == series[("t/app-1/m", "request_count")].index[TRAIN + 40]


def test_scoring_the_newest_hours_equals_scoring_them_all(fitted) -> None:
    # Online detectors: the last 6 hours must not depend on how much is scored at once.
    fleet, series = fitted
    whole = fleet.score(series).results
    newest = fleet.score(series, hours=6).results
    for key, result in newest.items():
        np.testing.assert_allclose(result.scores, whole[key].scores[-6:])
        np.testing.assert_allclose(result.expected, whole[key].expected[-6:])


def test_unknown_stale_and_short_series(fitted) -> None:
    fleet, series = fitted
    known = ("t/app-0/m", "request_count")
    # The hour after the training data is missing: the new hours do not continue it.
    gap = series[known].drop(series[known].index[TRAIN])
    scores = fleet.score(
        {
            known: gap,
            ("t/new-app/m", "request_count"): _series(9),
            ("t/tiny/m", "request_count"): _series(10, hours=30),
        },
        hours=6,
    )
    assert scores.reused == 0
    assert scores.fitted == 2
    assert scores.skipped == [("t/tiny/m", "request_count")]
    assert all(len(r.values) == 6 for r in scores.results.values())


def test_feedback_threshold_silences_a_series(fitted) -> None:
    fleet, series = fitted
    key = ("t/app-1/m", "request_count")
    spike = fleet.score({key: series[key]}, hours=NEW).results[key]
    assert spike.is_anomaly.any()
    before = fleet.threshold(key)
    try:
        fleet.set_threshold(key, float(spike.scores.max()) + 0.01)
        assert not fleet.score({key: series[key]}, hours=NEW).results[key].is_anomaly.any()
    finally:
        fleet.set_threshold(key, before)
