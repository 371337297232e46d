"""DetectorSpec with the shift tests: the hourly spike part recalibrated beside them, read back
from older specs unchanged, kept through the fleet's data files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ml.anomaly.fleet import (
    COVERED_METRICS,
    RANGE_ONLY_METRICS,
    RANGE_TOLERANCE,
    TESTED_RANGE_TOLERANCE,
    TESTED_THRESHOLD,
    UNFLAGGED,
    DetectorSpec,
    Fleet,
)
from ml.anomaly.fleet_state import load_fleet, save_fleet
from ml.anomaly.shift_test import SHIFT_RULES

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
    key = ("t/app/m", "cost_usd")
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


def _seasonal(seed: int, hours: int, heavy: bool = True) -> pd.Series:
    """A daily cycle of 50-150 with Student-t (3) noise, or Gaussian noise of sd 1."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-10-05", periods=hours, freq="h", tz="UTC")
    cycle = 100.0 + 50.0 * np.cos(2 * np.pi * np.arange(hours) / 24)
    noise = 2.0 * rng.standard_t(3, hours) if heavy else rng.normal(0, 1, hours)
    return pd.Series(cycle + noise, index=index)


def test_a_spec_stored_before_spike_rules_reads_back_with_the_third_pass_rules() -> None:
    # fleet.json of a baseline + tests version registered before spike_rules existed.
    old = {"members": ["robust_baseline"], "threshold": 0.5, "shift_tests": True}
    spec = DetectorSpec.from_dict(old)
    assert spec.spike_rules == 1
    assert spec.tested_metrics == ("error_rate",)
    assert not any(spec.range_only(m) for m in ("latency_p95_ms", "cost_usd", "tokens"))
    assert spec.threshold_for("tokens") == TESTED_THRESHOLD
    assert spec.shift_rules == 1
    assert DetectorSpec.from_dict({**old, "spike_rules": 2, "shift_rules": 4}) == TESTED


def test_a_spec_stored_before_shift_rules_reads_back_with_the_rules_it_was_evaluated_with() -> None:
    # fleet.json of a fourth-pass version (spike_rules 2, no shift_rules).
    old = {"members": ["robust_baseline"], "shift_tests": True, "spike_rules": 2}
    assert DetectorSpec.from_dict(old).shift_rules == 1
    assert DetectorSpec.from_dict({**old, "shift_rules": 2}).shift_rules == 2
    assert DetectorSpec.from_dict({**old, "shift_rules": 3}).shift_rules == 3
    assert TESTED.shift_rules == SHIFT_RULES == 4
    with pytest.raises(ValueError):
        DetectorSpec(shift_rules=5)


def test_rules_two_leave_tokens_to_the_cost_tests_and_alarm_on_the_range_elsewhere() -> None:
    assert TESTED.spike_rules == 2
    assert COVERED_METRICS == ("tokens",)
    assert TESTED.threshold_for("tokens") == UNFLAGGED
    assert all(TESTED.range_only(m) for m in RANGE_ONLY_METRICS)
    assert not TESTED.range_only("request_count")
    assert not PLAIN.range_only("cost_usd")


def test_an_in_range_cost_outlier_is_no_alarm_but_a_gross_spike_is() -> None:
    # Regression: with the tests, calibrated spike scores of p <= 1e-9 extrapolated from a
    # week's tail made false alarms on cost, tokens and security alerts that no incident needed.
    series = _seasonal(4, TRAIN + 48, heavy=False)
    series.iloc[TRAIN + 12] = 140.0  # the trough hour (expected ~50), inside the week's range
    series.iloc[TRAIN + 36] = 5 * 150.0  # a gross x5 spike
    key = ("t/app/m", "cost_usd")
    rules_one = replace(TESTED, spike_rules=1)
    flagged = {}
    for spec in (rules_one, TESTED):
        result = Fleet.fit(spec, {key: series.iloc[:TRAIN]}).score({key: series}).results[key]
        assert result.scores[12] >= TESTED_THRESHOLD
        flagged[spec.spike_rules] = np.flatnonzero(result.is_anomaly).tolist()
    assert 12 in flagged[1]
    assert flagged[2] == [36]


def test_a_clean_seasonal_heavy_tailed_week_raises_no_range_only_alarm() -> None:
    series = _seasonal(5, TRAIN + TRAIN)
    for metric in ("cost_usd", "tokens", "latency_p95_ms"):
        key = ("t/app/m", metric)
        result = Fleet.fit(TESTED, {key: series.iloc[:TRAIN]}).score({key: series}).results[key]
        assert not result.is_anomaly.any(), metric


def test_the_range_only_rule_survives_the_data_files(tmp_path) -> None:
    series = {
        ("t/app/m", "cost_usd"): _seasonal(6, TRAIN),
        ("t/app/m", "request_count"): _series(7, TRAIN),
    }
    save_fleet(Fleet.fit(TESTED, series), tmp_path)
    loaded = load_fleet(tmp_path)
    assert loaded.spec.spike_rules == 2
    assert loaded.spec.shift_rules == SHIFT_RULES
    assert loaded.detectors[("t/app/m", "cost_usd")].range_only
    assert not loaded.detectors[("t/app/m", "request_count")].range_only
