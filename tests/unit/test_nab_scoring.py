"""NAB scoring on tiny hand-computed cases, corpus loading, and the CLI's failure exit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmhub.cli.ml import ml_app
from ml.evaluation.nab import (
    NAB_PROFILES,
    EvaluationError,
    NabCorpus,
    NabSeries,
    evaluate_online,
    evaluate_scores,
    load_corpus,
    load_profiles,
    probationary_length,
    scaled_sigmoid,
    score_file,
    score_profile,
    sweep_thresholds,
)

STANDARD, LOW_FP, LOW_FN = NAB_PROFILES
ROWS = 100
WINDOW = (40, 59)  # 20 rows; probation is the first 15 rows


def _series(windows: tuple[tuple[int, int], ...] = (WINDOW,), name: str = "cat/a.csv") -> NabSeries:
    index = pd.date_range("2024-01-01", periods=ROWS, freq="5min")
    return NabSeries(
        name=name,
        values=pd.Series(np.zeros(ROWS), index=index),
        windows=windows,
        probation=probationary_length(ROWS),
    )


def _corpus(*series: NabSeries) -> NabCorpus:
    return NabCorpus(series=series or (_series(),))


def _scores(*rows: int, value: float = 1.0) -> np.ndarray:
    scores = np.zeros(ROWS)
    scores[list(rows)] = value
    return scores


def _raw(scores: np.ndarray, profile=STANDARD, series: NabSeries | None = None) -> float:
    return score_file(series or _series(), scores, profile, threshold=0.5).score


def test_scaled_sigmoid_matches_nab() -> None:
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.98661, abs=1e-5)
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(0.84828, abs=1e-5)
    assert float(scaled_sigmoid(0.0)) == pytest.approx(0.0)
    assert float(scaled_sigmoid(1.0)) == pytest.approx(-0.98661, abs=1e-5)
    assert float(scaled_sigmoid(3.0)) == -1.0


def test_probationary_length() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4033) == 604
    # NAB caps the probation at 15% of 5000 rows.
    assert probationary_length(10_000) == 750


def test_detection_at_window_start_earns_a_tp() -> None:
    assert _raw(_scores(40)) == pytest.approx(STANDARD.tp_weight)


def test_detection_at_window_end_earns_little() -> None:
    expected = float(scaled_sigmoid(-1 / 20) / scaled_sigmoid(-1.0))
    assert _raw(_scores(59)) == pytest.approx(expected)
    assert 0 < expected < 0.15


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    earliest = float(scaled_sigmoid(-(59 - 45 + 1) / 20) / scaled_sigmoid(-1.0))
    assert _raw(_scores(45, 50, 58)) == pytest.approx(earliest)


@pytest.mark.parametrize(("profile", "cost"), [(STANDARD, 1.0), (LOW_FP, 1.0), (LOW_FN, 2.0)])
def test_missed_window_costs_a_fn(profile, cost: float) -> None:
    assert _raw(np.zeros(ROWS), profile) == pytest.approx(-cost)


@pytest.mark.parametrize(("profile", "cost"), [(STANDARD, 0.11), (LOW_FP, 0.22)])
def test_false_positive_before_any_window_costs_a_fp(profile, cost: float) -> None:
    assert _raw(_scores(40, 20), profile) == pytest.approx(1.0 - cost)


def test_false_positive_after_a_window_grows_with_distance() -> None:
    just_after = _raw(_scores(40, 60)) - 1.0
    far_after = _raw(_scores(40, 99)) - 1.0
    assert just_after == pytest.approx(float(scaled_sigmoid(1 / 19)) * 0.11)
    assert -0.02 < just_after < 0
    assert far_after == pytest.approx(-0.11, abs=1e-4)


def test_probationary_detections_are_ignored() -> None:
    assert _raw(_scores(40, 3)) == pytest.approx(1.0)


def test_null_scores_zero_and_perfect_scores_hundred() -> None:
    series = _series(windows=((30, 39), (70, 79)))
    corpus = _corpus(series)
    for profile in NAB_PROFILES:
        null = score_profile(corpus, {series.name: np.zeros(ROWS)}, profile)
        perfect = score_profile(corpus, {series.name: _scores(30, 70)}, profile)
        assert null.normalized == pytest.approx(0.0)
        assert perfect.normalized == pytest.approx(100.0)
        assert null.null == pytest.approx(-2 * profile.fn_weight)
        assert perfect.perfect == pytest.approx(2 * profile.tp_weight)


def test_threshold_is_tuned_per_profile() -> None:
    # A window detected at 0.9 and a false positive at 0.95 (before the window): including the
    # false positive is worth it on every profile here, but it costs more on reward-low-FP.
    scores = np.zeros(ROWS)
    scores[20], scores[40] = 0.95, 0.9
    corpus = _corpus()
    standard = score_profile(corpus, {"cat/a.csv": scores}, STANDARD)
    low_fp = score_profile(corpus, {"cat/a.csv": scores}, LOW_FP)
    assert standard.threshold == pytest.approx(0.9)
    assert standard.raw == pytest.approx(0.89)
    assert low_fp.raw == pytest.approx(0.78)
    # Detecting nothing would give -1: the tuned threshold must beat it.
    assert standard.normalized == pytest.approx(100 * (0.89 + 1) / 2)


def test_threshold_sweep_skips_a_costly_low_threshold() -> None:
    scores = np.zeros(ROWS)
    scores[40] = 0.8
    scores[20:30] = 0.5  # ten false positives: -1.1, more than the window is worth
    best = score_profile(_corpus(), {"cat/a.csv": scores}, STANDARD)
    assert best.threshold == pytest.approx(0.8)
    assert best.raw == pytest.approx(1.0)


def test_sweep_agrees_with_direct_scoring_at_every_threshold() -> None:
    rng = np.random.default_rng(7)
    files = (_series(((20, 29), (60, 79)), "a/x.csv"), _series(((50, 54),), "a/y.csv"))
    corpus = _corpus(*files)
    scores = {f.name: np.round(rng.random(ROWS), 2) for f in files}
    for profile in NAB_PROFILES:
        sweep = sweep_thresholds(corpus, scores, profile)
        for threshold, total in zip(sweep.thresholds[1:], sweep.scores[1:], strict=True):
            direct = sum(score_file(f, scores[f.name], profile, threshold).score for f in files)
            assert total == pytest.approx(direct)
        assert sweep.scores[0] == pytest.approx(-3 * profile.fn_weight)


def test_detection_metrics_at_the_standard_threshold() -> None:
    series = _series(windows=((30, 39), (70, 79)))
    scores = _scores(30, 20, 50)  # one window found, one missed, two false positives
    report = evaluate_scores(_corpus(series), {series.name: scores})
    assert report.thresholds["standard"] == pytest.approx(1.0)
    assert report.recall == pytest.approx(0.5)
    assert report.precision == pytest.approx(1 / 3)
    assert report.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    outside = ROWS - 15 - 20
    assert report.fpr == pytest.approx(2 / outside)
    assert set(report.to_dict()) >= {
        "nab_standard",
        "nab_low_fp",
        "nab_low_fn",
        "precision",
        "recall",
        "f1",
        "fpr",
    }


def test_non_finite_scores_fail_the_evaluation() -> None:
    scores = np.zeros(ROWS)
    scores[50] = math.nan
    with pytest.raises(EvaluationError, match="finite"):
        evaluate_scores(_corpus(), {"cat/a.csv": scores})


def test_a_corpus_without_windows_cannot_be_normalised() -> None:
    series = _series(windows=())
    with pytest.raises(EvaluationError, match="no anomaly window"):
        evaluate_scores(_corpus(series), {series.name: np.zeros(ROWS)})


def _write_layout(root: Path) -> tuple[Path, Path]:
    data = root / "data"
    (data / "cat").mkdir(parents=True)
    index = pd.date_range("2024-01-01", periods=ROWS, freq="5min")
    frame = pd.DataFrame({"timestamp": index.strftime("%Y-%m-%d %H:%M:%S"), "value": 1.0})
    frame.to_csv(data / "cat" / "a.csv", index=False)
    frame.to_csv(data / "cat" / "unlabelled.csv", index=False)
    labels = {
        "cat/a.csv": [[str(index[40]) + ".000000", str(index[59]) + ".000000"]],
        "cat/absent.csv": [],
    }
    path = root / "labels.json"
    path.write_text(json.dumps(labels))
    return data, path


def test_load_corpus_scores_only_the_labelled_files_present(tmp_path: Path) -> None:
    data, labels = _write_layout(tmp_path)
    corpus = load_corpus(data, labels)
    assert [s.name for s in corpus.series] == ["cat/a.csv"]
    assert corpus.series[0].windows == (WINDOW,)
    assert corpus.labelled_missing == ("cat/absent.csv",)
    assert corpus.unlabelled_present == ("cat/unlabelled.csv",)


def test_load_corpus_fails_when_no_labelled_file_is_present(tmp_path: Path) -> None:
    data, _ = _write_layout(tmp_path)
    labels = tmp_path / "other.json"
    labels.write_text(json.dumps({"cat/absent.csv": []}))
    with pytest.raises(EvaluationError, match="none of the labelled files"):
        load_corpus(data, labels)


def test_load_profiles_reads_nab_format(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps(
            {
                "standard": {
                    "CostMatrix": {"tpWeight": 1, "fnWeight": 1, "fpWeight": 0.11, "tnWeight": 1}
                }
            }
        )
    )
    assert load_profiles(path) == (STANDARD,)


def test_eval_anomaly_exits_non_zero_when_the_evaluation_fails(tmp_path: Path) -> None:
    data, _ = _write_layout(tmp_path)
    labels = tmp_path / "other.json"
    labels.write_text(json.dumps({"cat/absent.csv": []}))
    result = CliRunner().invoke(
        ml_app, ["eval-anomaly", "--data-dir", str(data), "--labels", str(labels), "--json"]
    )
    assert result.exit_code == 2
    assert "none of the labelled files" in result.output


def _write_backwards(root: Path) -> tuple[Path, Path]:
    """cat/a.csv as usual, other/b.csv whose row 70 steps back 10 minutes (as real NAB files do),
    and other/broken.csv whose window lies outside the file."""
    data, labels_path = _write_layout(root)
    (data / "other").mkdir()
    index = pd.date_range("2024-01-01", periods=ROWS, freq="5min")
    stamps = list(index)
    stamps[70] = stamps[70] - pd.Timedelta(minutes=10)
    frame = pd.DataFrame({"timestamp": pd.DatetimeIndex(stamps).strftime("%Y-%m-%d %H:%M:%S")})
    frame["value"] = 1.0
    frame.to_csv(data / "other" / "b.csv", index=False)
    frame.to_csv(data / "other" / "broken.csv", index=False)
    labels = json.loads(labels_path.read_text())
    labels["other/b.csv"] = [[str(index[40]), str(index[59])]]
    labels["other/broken.csv"] = [["2030-01-01 00:00:00", "2030-01-02 00:00:00"]]
    labels_path.write_text(json.dumps(labels))
    return data, labels_path


def test_a_timestamp_stepping_backwards_is_kept_in_file_order(tmp_path: Path) -> None:
    # One backwards timestamp aborted the whole corpus ("timestamps are not sorted").
    data, labels = _write_backwards(tmp_path)
    corpus = load_corpus(data, labels)

    assert [s.name for s in corpus.series] == ["cat/a.csv", "other/b.csv"]
    assert corpus.unsorted == ("other/b.csv",)
    backwards = corpus.series[1]
    assert backwards.rows == ROWS
    assert backwards.windows == (WINDOW,)
    assert [name for name, _ in corpus.skipped] == ["other/broken.csv"]
    assert "holds no rows" in corpus.skipped[0][1]


def test_report_per_category(tmp_path: Path) -> None:
    data, labels = _write_backwards(tmp_path)
    corpus = load_corpus(data, labels)
    scores = {"cat/a.csv": _scores(WINDOW[0]), "other/b.csv": np.zeros(ROWS)}
    categories = evaluate_scores(corpus, scores).to_dict()["categories"]

    assert set(categories) == {"cat", "other"}
    assert categories["cat"]["recall"] == 1.0
    assert categories["other"]["recall"] == 0.0
    assert categories["other"]["nab_standard"] == pytest.approx(0.0)
    assert categories["cat"]["nab_standard"] == pytest.approx(100.0)


class _FailsOnOther:
    name = "fails_on_other"

    def fit(self, train: pd.Series) -> object:
        if train.index[0] != train.index.min() or len(set(train.index)) < len(train):
            raise RuntimeError("unsorted")
        return self

    def score(self, series: pd.Series):
        if (np.diff(series.index.asi8) < 0).any():
            raise RuntimeError("cannot score an unsorted stream")
        scores = np.zeros(len(series))
        return type("R", (), {"scores": scores, "components": {}})()


def test_a_detector_failing_on_one_file_does_not_abort_the_corpus(tmp_path: Path) -> None:
    data, labels = _write_backwards(tmp_path)
    corpus = load_corpus(data, labels)
    reports, _ = evaluate_online(corpus, _FailsOnOther)

    report = reports["fails_on_other"]
    assert [name for name, _ in report.failed_files] == ["other/b.csv"]
    assert [f.name for f in report.files] == ["cat/a.csv"]
