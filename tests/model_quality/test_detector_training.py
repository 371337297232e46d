"""Detector training: the gate's verdict is reproducible and the winner is a loadable model."""

from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from ml.anomaly.fleet import DetectorSpec
from ml.anomaly.training import (
    SpikeEvaluation,
    baseline_spec,
    complexity,
    evaluate_candidates,
    fit_published,
)
from ml.pyfunc import DETECTOR_CODE, DetectorModel, load_model_dir, save_detector
from ml.pyfunc.integrity import ArtifactIntegrityError, digest_tree, verify_tree

HOURS = 24 * 7 + 168
SPEC = DetectorSpec(cooldown=24, network_epochs=1, min_train_points=72)
EVALUATION = SpikeEvaluation(eval_hours=168, spike_sigmas=(3.0, 6.0), resamples=100)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _series() -> dict[tuple[str, str], pd.Series]:
    index = pd.date_range("2026-10-01", periods=HOURS, freq="h", tz="UTC")
    daily = 1 + 0.5 * np.sin(2 * np.pi * np.arange(HOURS) / 24)
    out = {}
    for i in range(5):
        rng = np.random.default_rng(i)
        values = rng.poisson((60 + 40 * i) * daily).astype(float)
        out[(f"t/app-{i}/m", "request_count")] = pd.Series(values, index=index)
    return out


@pytest.fixture(scope="module")
def trained():
    series = _series()
    candidates = {"baseline": baseline_spec(SPEC), "candidate": SPEC}
    first = evaluate_candidates(series, candidates, evaluation=EVALUATION)
    second = evaluate_candidates(series, candidates, evaluation=EVALUATION)
    return series, first, second


def test_the_verdict_is_the_same_on_a_second_run(trained) -> None:
    # Two `make demo` runs gave different verdicts: nothing may depend on unseeded state.
    _, first, second = trained
    assert first.metrics == second.metrics
    assert first.decision.reason == second.decision.reason
    assert first.decision.winner == second.decision.winner


def test_the_gate_follows_its_rule(trained) -> None:
    _, first, _ = trained
    assert complexity(first.specs["baseline"]) < complexity(first.specs["candidate"])
    (comparison,) = first.decision.comparisons
    assert (comparison.challenger, comparison.holder) == ("candidate", "baseline")
    auc = {name: metrics["auc"] for name, metrics in first.metrics.items()}
    assert comparison.advantage == pytest.approx(auc["candidate"] - auc["baseline"])
    assert comparison.noise > 0
    expected = "candidate" if comparison.advantage > 2 * comparison.noise else "baseline"
    assert first.decision.winner == expected


def test_the_baseline_alone_is_a_champion() -> None:
    # A fresh install whose only candidate is the floor still publishes a detector.
    series = _series()
    training = evaluate_candidates(series, {"baseline": baseline_spec(SPEC)}, evaluation=EVALUATION)
    assert training.decision.winner == "baseline"
    assert training.winner.members == ("robust_baseline",)


def test_the_winner_registers_and_loads_through_models_from_code(trained, tmp_path: Path) -> None:
    series, first, _ = trained
    published = fit_published(first.winner, series, 6, first.tuned)
    model_dir = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(model_dir),
        python_model=str(DETECTOR_CODE),
        artifacts=save_detector(published, 6, tmp_path / "artifacts"),
    )
    newest = {key: values.iloc[-7:] for key, values in series.items()}
    expected, _ = DetectorModel(published, 6).score_series(newest)
    mine = load_model_dir(model_dir)
    assert isinstance(mine, DetectorModel)
    got, stats = mine.score_series(newest)
    assert stats.reused == len(series) and stats.fitted == 0
    pd.testing.assert_frame_equal(got, expected)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "series_id": sid,
                    "metric": metric,
                    "bucket_at": v.index.tz_convert(None),
                    "value": v.to_numpy(),
                }
            )
            for (sid, metric), v in newest.items()
        ],
        ignore_index=True,
    )
    through_mlflow = mlflow.pyfunc.load_model(str(model_dir)).predict(frame)
    np.testing.assert_array_equal(through_mlflow["score"].to_numpy(), expected["score"].to_numpy())

    digests = digest_tree(model_dir)
    verify_tree(model_dir, digests)
    (model_dir / "artifacts" / "fleet" / "fleet.json").write_text("{}")
    with pytest.raises(ArtifactIntegrityError, match="changed"):
        verify_tree(model_dir, digests)
