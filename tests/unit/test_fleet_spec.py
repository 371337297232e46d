"""DetectorSpec with the shift tests: the hourly spike part recalibrated beside them, read back
from older specs unchanged, kept through the fleet's data files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.anomaly.fleet import (
    RANGE_TOLERANCE,
    TESTED_RANGE_TOLERANCE,
    TESTED_THRESHOLD,
    UNFLAGGED,
    DetectorSpec,
    Fleet,
)
from ml.anomaly.fleet_state import load_fleet, save_fleet

TRAIN = 24 * 7
PLAIN = DetectorSpec(members=("robust_baseline",))
TESTED = DetectorSpec(members=("robust_baseline",), shift_tests=True)


def _series(seed: int, hours: int, level: float = 100.0) -> pd.Series:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-10-05", periods=hours, freq="h", tz="UTC")
    return pd.Series(level + rng.normal(0, level / 20, hours), index=index)


def test_a_spec_registered_before_the_tests_reads_back_with_the_old_spike_rules() -> None:
    # fleet.json of a version registered before shift_tests existed: no such key.
    old = {"members": ["robust_baseline"], "fusion": "mean", "threshold": 0.5, "cooldown": 64}
    spec = DetectorSpec.from_dict(old)
    assert not spec.shift_tests
    assert spec.spike_threshold == 0.5
    assert spec.range_tolerance == RANGE_TOLERANCE
    assert spec.tested_metrics == ()
    assert spec.threshold_for("error_rate") == 0.5


def test_with_the_tests_the_spike_part_is_stricter_and_leaves_error_rates_to_them() -> None:
    assert TESTED.spike_threshold == TESTED_THRESHOLD
    assert DetectorSpec(shift_tests=True, threshold=0.95).spike_threshold == 0.95
    assert TESTED.threshold_for("error_rate") == UNFLAGGED
    assert TESTED.threshold_for("latency_p95_ms") == TESTED_THRESHOLD
    detector = TESTED.build()
    assert detector.threshold == TESTED_THRESHOLD
    assert detector.range_tolerance == TESTED_RANGE_TOLERANCE
    assert all(m.range_tolerance == TESTED_RANGE_TOLERANCE for m in detector.members)


@pytest.mark.parametrize(
    ("beyond", "plain_flags", "tested_flags"), [(0.1, True, False), (5.0, True, True)]
)
def test_the_widened_range_rule_keeps_gross_values_and_drops_marginal_ones(
    beyond: float, plain_flags: bool, tested_flags: bool
) -> None:
    # Regression: a value just past a week's range (scored 1 by the 5% range rule) made most of
    # the plain baseline's false alarms on the incident evaluation's clean weeks.
    series = _series(0, TRAIN + 24)
    high, low = series.iloc[:TRAIN].max(), series.iloc[:TRAIN].min()
    series.iloc[TRAIN + 12] = high + beyond * (high - low)
    key = ("t/app/m", "tokens")
    for spec, expected in ((PLAIN, plain_flags), (TESTED, tested_flags)):
        fleet = Fleet.fit(spec, {key: series.iloc[:TRAIN]})
        result = fleet.score({key: series}).results[key]
        assert bool(result.is_anomaly[12]) is expected, spec.shift_tests


def test_a_tested_metric_is_scored_but_never_flagged_even_after_feedback() -> None:
    rates = _series(1, TRAIN + 24, level=0.02).clip(lower=0)
    rates.iloc[TRAIN + 5] = 0.5
    key = ("t/app/m", "error_rate")
    plain = Fleet.fit(PLAIN, {key: rates.iloc[:TRAIN]})
    tested = Fleet.fit(TESTED, {key: rates.iloc[:TRAIN]})
    assert plain.score({key: rates}).results[key].is_anomaly[5]
    result = tested.score({key: rates}).results[key]
    assert result.scores[5] == pytest.approx(1.0) and not result.is_anomaly.any()
    tested.set_threshold(key, 0.7)
    assert tested.threshold(key) == UNFLAGGED
    # A series the fleet has not seen is fitted on the spot with the same rule.
    assert tested.threshold(("t/new/m", "error_rate")) == UNFLAGGED


def test_the_recalibrated_thresholds_survive_the_data_files(tmp_path) -> None:
    series = {
        ("t/app/m", "error_rate"): _series(2, TRAIN, level=0.02),
        ("t/app/m", "latency_p95_ms"): _series(3, TRAIN),
    }
    save_fleet(Fleet.fit(TESTED, series), tmp_path)
    loaded = load_fleet(tmp_path)
    assert loaded.spec == TESTED
    assert loaded.threshold(("t/app/m", "error_rate")) == UNFLAGGED
    assert loaded.threshold(("t/app/m", "latency_p95_ms")) == TESTED_THRESHOLD
    detector = loaded.detectors[("t/app/m", "latency_p95_ms")]
    assert detector.range_tolerance == TESTED_RANGE_TOLERANCE
