"""The gate's subtle-shift evaluation: the shift tests earn their place on injected shifts."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.anomaly.fleet import DetectorSpec, Fleet
from ml.anomaly.fleet_state import load_fleet, save_fleet
from ml.anomaly.shift_evaluation import (
    CASES_PER_SERIES,
    SHIFT_HOURS,
    SUBTLE_SHIFTS,
    shift_cases,
)
from ml.anomaly.training import SpikeEvaluation, baseline_spec, evaluate_candidates

HOURS = 24 * 14
EVAL_HOURS = 168
SPEC = DetectorSpec(members=("robust_baseline",), cooldown=24, min_train_points=72)
EVALUATION = SpikeEvaluation(eval_hours=EVAL_HOURS, spike_sigmas=(3.0, 6.0), resamples=100)


#: The shift tests' inputs beside the series (``DetectorInput.shift_inputs``), by ``_routes``.
INPUTS: dict[tuple[str, str], pd.Series] = {}


def _routes(n: int = 8) -> dict[tuple[str, str], pd.Series]:
    """Routes of 40-110 requests an hour at noon: request counts, a p95 of lognormal
    latencies, a cost total of lognormal per-request costs, an error rate of 1.2%; the billed
    requests and their mean log cost go to ``INPUTS``."""
    index = pd.date_range("2026-10-01", periods=HOURS, freq="h", tz="UTC")
    hour = np.arange(HOURS) % 24
    out = {}
    for i in range(n):
        rng = np.random.default_rng(i)
        counts = rng.poisson((40 + 10 * i) * (1 + 0.6 * np.cos(2 * np.pi * (hour - 13) / 24)))
        draws = [rng.lognormal(np.log(900), 0.4, max(c, 1)) for c in counts]
        latency = np.array([np.percentile(d, 95) for d in draws])
        each = [rng.lognormal(np.log(0.002), 0.5, c) for c in counts]
        cost = np.array([c.sum() for c in each])
        errors = rng.binomial(counts, 0.012)
        route = f"t/app-{i}/m"
        out[(route, "request_count")] = pd.Series(counts.astype(float), index=index)
        out[(route, "latency_p95_ms")] = pd.Series(latency, index=index)
        out[(route, "cost_usd")] = pd.Series(cost, index=index)
        out[(route, "error_rate")] = pd.Series(errors / np.maximum(counts, 1), index=index)
        INPUTS[(route, "paid_request_count")] = pd.Series(counts.astype(float), index=index)
        INPUTS[(route, "cost_log_mean")] = pd.Series(
            [np.log(c).mean() if len(c) else np.nan for c in each], index=index
        )
        INPUTS[(route, "latency_log_count")] = pd.Series(counts.astype(float), index=index)
        INPUTS[(route, "latency_log_mean")] = pd.Series(
            [np.log(d).mean() for d in draws], index=index
        )
    return out


def test_each_route_metric_gets_seeded_shifts_of_its_size_at_distinct_positions() -> None:
    series = _routes(3)
    cases = shift_cases(series, EVAL_HOURS, seed=0)
    assert {metric for _, metric in cases} == set(SUBTLE_SHIFTS)
    assert all(len(c) == CASES_PER_SERIES for c in cases.values())
    assert all(len({case.start for case in c}) == len(c) for c in cases.values())
    again = shift_cases(series, EVAL_HOURS, seed=0)
    starts = {k: [case.start for case in c] for k, c in cases.items()}
    assert starts == {k: [case.start for case in c] for k, c in again.items()}
    key = ("t/app-1/m", "latency_p95_ms")
    clean = series[key].iloc[-EVAL_HOURS:].to_numpy()
    for case in cases[key]:
        # One shift per case: the other cases' positions are untouched in this one.
        span = slice(case.start, case.start + SHIFT_HOURS)
        np.testing.assert_allclose(case.shifted.to_numpy()[span], 1.4 * clean[span])
        outside = np.ones(EVAL_HOURS, dtype=bool)
        outside[span] = False
        np.testing.assert_array_equal(case.shifted.to_numpy()[outside], clean[outside])
    assert all(len(c) == 1 for c in shift_cases(series, EVAL_HOURS, per_series=1).values())


@pytest.fixture(scope="module")
def trained():
    series = _routes()
    candidates = {
        "baseline": baseline_spec(SPEC),
        "baseline_tests": replace(baseline_spec(SPEC), shift_tests=True),
    }
    first = evaluate_candidates(series, candidates, evaluation=EVALUATION, shift_inputs=INPUTS)
    second = evaluate_candidates(series, candidates, evaluation=EVALUATION, shift_inputs=INPUTS)
    return first, second


def test_the_shift_tests_win_on_subtle_shifts_beyond_the_noise(trained) -> None:
    first, _ = trained
    metrics = first.metrics
    assert metrics["baseline_tests"]["shift_recall"] > metrics["baseline"]["shift_recall"] + 0.3
    # Same members, same spikes: only the range rule, widened beside the tests
    # (``ml.anomaly.fleet.TESTED_RANGE_TOLERANCE``), moves the spike evaluation, and little.
    assert metrics["baseline_tests"]["auc"] == pytest.approx(metrics["baseline"]["auc"], abs=0.01)
    assert (
        metrics["baseline_tests"]["shift_false_alarms_per_1000_hours"]
        <= metrics["baseline"]["shift_false_alarms_per_1000_hours"] + 0.5
    )
    assert first.decision.winner == "baseline_tests"
    assert first.winner.shift_tests


def test_the_verdict_on_shifts_is_the_same_on_a_second_run(trained) -> None:
    first, second = trained
    assert first.metrics == second.metrics
    assert first.decision.reason == second.decision.reason


def test_without_the_subtle_evaluation_the_simpler_baseline_stays(trained) -> None:
    # Equal on spikes and not judged on shifts: the tests have nothing to win on.
    series = _routes()
    candidates = {
        "baseline": baseline_spec(SPEC),
        "baseline_tests": replace(baseline_spec(SPEC), shift_tests=True),
    }
    training = evaluate_candidates(
        series,
        candidates,
        evaluation=replace(EVALUATION, subtle_shifts=False),
        shift_inputs=INPUTS,
    )
    assert training.decision.winner == "baseline"


def test_the_shift_tests_round_trip_with_the_fleet(tmp_path: Path) -> None:
    series = {k: v for k, v in _routes(2).items()}
    fleet = Fleet.fit(replace(SPEC, shift_tests=True), series)
    save_fleet(fleet, tmp_path)
    assert load_fleet(tmp_path).spec.shift_tests
