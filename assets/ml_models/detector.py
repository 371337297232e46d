"""The anomaly detector: evaluated on real series with injected spikes, registered in MLflow."""

import math
import time
from dataclasses import dataclass

import dagster as dg
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from pydantic import Field

from assets.ml_models.data import HOURLY_MART, busiest_series, read_hourly_mart
from assets.ml_models.promotion import (
    BEATS_CHAMPION_AND_BASELINE,
    CHAMPION,
    TrainedCandidate,
    apply_gate,
)
from assets.ml_models.pyfunc import DETECTOR_MEMBERS, DetectorModel, build_detector
from ml.anomaly import Detector, RobustBaseline
from ml.anomaly.base import global_scale
from ml.registry import should_promote
from orchestration.resources import HubResource
from orchestration.resources.mlflow import MlflowResource

DETECTOR_KEY = dg.AssetKey(["ml", "anomaly_detector"])


class DetectorConfig(dg.Config):
    experiment: str = Field("llmhub/anomaly_detector", description="MLflow experiment.")
    registered_model_name: str = Field(
        "llmhub-anomaly-detector", description="MLflow registered model."
    )
    members: list[str] = Field(
        list(DETECTOR_MEMBERS), description=f"Fused detectors, a subset of {DETECTOR_MEMBERS}."
    )
    fusion: str = Field("mean", description="mean, max or median of the members' scores.")
    threshold: float = Field(0.5, description="Alert threshold on the fused score.")
    cooldown: int = Field(64, description="Hours after an alert in which only a higher one counts.")
    metric: str = Field("request_count", description="The series metric evaluated.")
    history_hours: int = Field(24 * 21, description="Hours of the mart read, back from its end.")
    eval_hours: int = Field(168, description="Held-out hours per series, spikes injected there.")
    max_series: int = Field(20, description="Evaluate the busiest series only (run time).")
    spike_sigmas: list[float] = Field(
        [3.0, 4.0, 6.0],
        description="Injected spike heights, in robust sigmas of the day-over-day noise; each "
        "series is evaluated once per height.",
    )
    score_hours: int = Field(6, description="Default hours the registered model scores.")
    promotion_metric: str = Field(
        "auc", description="Higher-is-better metric that promotes (auc, f1, recall)."
    )


@dataclass(frozen=True)
class Confusion:
    """Point-level outcome on the held-out hours: injected spikes vs everything else."""

    true_positives: int = 0
    false_negatives: int = 0
    false_positives: int = 0
    true_negatives: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(
            self.true_positives + other.true_positives,
            self.false_negatives + other.false_negatives,
            self.false_positives + other.false_positives,
            self.true_negatives + other.true_negatives,
        )

    def metrics(self) -> dict[str, float]:
        tp, fn, fp, tn = (
            self.true_positives,
            self.false_negatives,
            self.false_positives,
            self.true_negatives,
        )
        recall = tp / (tp + fn) if tp + fn else math.nan
        precision = tp / (tp + fp) if tp + fp else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {
            "recall": recall,
            "precision": precision,
            "fpr": fp / (fp + tn) if fp + tn else math.nan,
            "f1": f1 if math.isfinite(recall) else math.nan,
        }


def spike_positions(eval_hours: int, cooldown: int) -> np.ndarray:
    """Where spikes go in the held-out window: far enough apart that the second is not inside
    the first's cooldown, and clear of the window's first day."""
    gap = max(cooldown + 1, 24)
    return np.arange(24, eval_hours, gap)


def evaluate(
    fitted: Detector, held_out: pd.Series, positions: np.ndarray, height: float
) -> tuple[Confusion, np.ndarray, np.ndarray]:
    """Score ``held_out`` with spikes of ``height`` added at ``positions`` (``fitted`` was fitted
    on the hours before it; scoring leaves it unchanged, so one fit serves every height).

    Returns the confusion at the detector's threshold and the calibrated scores before the
    cooldown (``likelihood``) of the spiked and of the clean points: the cooldown zeroes the
    hours after an alert, which would make the ranking depend on the spike spacing.
    """
    spiked = held_out.copy()
    spiked.iloc[positions] = spiked.iloc[positions] + height
    result = fitted.score(spiked)
    truth = np.zeros(len(spiked), dtype=bool)
    truth[positions] = True
    flagged = np.asarray(result.is_anomaly, dtype=bool)
    confusion = Confusion(
        int((flagged & truth).sum()),
        int((~flagged & truth).sum()),
        int((flagged & ~truth).sum()),
        int((~flagged & ~truth).sum()),
    )
    return confusion, result.likelihood[truth], result.likelihood[~truth]


def noise_scale(train: pd.Series, season: int = 24) -> float:
    """Robust sigma of one point's noise, from day-over-day differences (``MAD / sqrt 2``);
    the raw spread of an hourly series is mostly its daily cycle, which would make any spike
    sized by it trivially easy to detect."""
    values = train.to_numpy(dtype=float)
    diffs = values[season:] - values[:-season]
    if diffs.size == 0:
        return global_scale(values)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return 1.4826 * mad / math.sqrt(2) if mad > 0 else global_scale(values)


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a spiked point scores above a clean one (ties count half)."""
    if positive.size == 0 or negative.size == 0:
        return math.nan
    above = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((above + 0.5 * ties) / (positive.size * negative.size))


def score_distribution(spiked: np.ndarray, clean: np.ndarray, threshold: float) -> Figure:
    """Histogram of the candidate's calibrated scores on clean and on spiked held-out points."""
    figure = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = np.linspace(0, 1, 41)
    axes.hist(clean, bins=bins, alpha=0.6, label=f"clean points ({len(clean)})", log=True)
    axes.hist(spiked, bins=bins, alpha=0.6, label=f"injected spikes ({len(spiked)})", log=True)
    axes.axvline(threshold, color="k", linestyle="--", linewidth=1, label="threshold")
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("points")
    axes.legend(fontsize="small")
    return figure


@dg.asset(
    key=DETECTOR_KEY,
    group_name="ml_models",
    kinds={"mlflow", "python"},
    deps=[HOURLY_MART],
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_CHAMPION_AND_BASELINE,
            asset=DETECTOR_KEY,
            blocking=True,
            description="The new version beats the robust baseline and the champion on the "
            "injected-spike evaluation (it then holds the `champion` alias).",
        )
    ],
)
def anomaly_detector(
    context: dg.AssetExecutionContext,
    config: DetectorConfig,
    hub: HubResource,
    mlflow_tracking: MlflowResource,
) -> dg.MaterializeResult:
    """The published anomaly detector configuration (``EnsembleDetector``), as an MLflow model.

    Evaluated on the busiest series of ``marts.fct_llm_requests_hourly``: each is fitted on its
    history and scores its last ``eval_hours`` hours with synthetic spikes of several heights
    injected. The gate metric is the rank AUC of spiked vs clean hours (threshold-free: at the
    alert threshold both the ensemble and the floor mostly flag only out-of-range values, so
    recall/F1 tie); recall, precision, false-positive rate and F1 at the threshold are logged
    too, each against the ``RobustBaseline`` floor on the same spikes. The `champion` alias
    moves here when ``should_promote`` says so; the check reports the decision.
    """
    started = time.monotonic()
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    min_points = config.eval_hours + 24 * 7
    series = busiest_series(hourly, config.metric, config.max_series, min_points)
    if not series:
        raise dg.Failure(f"no {config.metric} series with {min_points} hours to evaluate on")
    positions = spike_positions(config.eval_hours, config.cooldown)

    # The champion is re-evaluated on the same series and spikes: its own logged metrics come
    # from an older data window, which would make the comparison one of windows, not models.
    name = config.registered_model_name
    champion_version = mlflow_tracking.champion_version(name, CHAMPION)
    champion_model = (
        mlflow_tracking.load_champion(name, CHAMPION)[0].unwrap_python_model()
        if champion_version is not None
        else None
    )
    totals: dict[str, Confusion] = {}
    scores: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for key, values in series:
        train, held_out = values.iloc[: -config.eval_hours], values.iloc[-config.eval_hours :]
        sigma = noise_scale(train)
        # Fitting is the expensive part (the LSTM trains for tens of epochs): once per series.
        fitted: dict[str, Detector] = {
            "candidate": build_detector(
                config.members, config.fusion, config.threshold, config.cooldown
            ).fit(train),
            "baseline": RobustBaseline(threshold=config.threshold, cooldown=config.cooldown).fit(
                train
            ),
        }
        if champion_model is not None:
            fitted["champion"] = champion_model.detector().fit(train)
        for spike_sigma in config.spike_sigmas:
            for label, detector in fitted.items():
                confusion, spiked, clean = evaluate(
                    detector, held_out, positions, spike_sigma * sigma
                )
                totals[label] = totals.get(label, Confusion()) + confusion
                scores.setdefault(label, ([], []))[0].append(spiked)
                scores[label][1].append(clean)
        context.log.debug(f"evaluated {key.label()}")
    pooled = {
        label: (np.concatenate(spiked), np.concatenate(clean))
        for label, (spiked, clean) in scores.items()
    }
    evaluated = {
        label: {**totals[label].metrics(), "auc": rank_auc(*pooled[label])} for label in totals
    }
    candidate_metrics = evaluated["candidate"]
    baseline_metrics = evaluated["baseline"]
    champion_metrics = evaluated.get("champion")
    decision = should_promote(
        candidate_metrics,
        champion_metrics,
        baseline_metrics,
        config.promotion_metric,
        lower_is_better=False,
    )

    model_config = {
        "members": list(config.members),
        "fusion": config.fusion,
        "threshold": config.threshold,
        "cooldown": config.cooldown,
        "score_hours": config.score_hours,
    }
    example_key, example = series[0]
    model_input = pd.DataFrame(
        {
            "series_id": example_key.label(),
            "metric": config.metric,
            "bucket_at": example.index[-48:].tz_convert(None),
            "value": example.iloc[-48:].to_numpy(dtype=float),
        }
    )
    model_output = pd.DataFrame(
        {
            "series_id": example_key.label(),
            "metric": config.metric,
            "bucket_at": example.index[-2:].tz_convert(None),
            "observed": 1.0,
            "expected": 1.0,
            "deviation": 0.0,
            "score": 0.0,
            "is_anomaly": False,
        }
    )
    signature = infer_signature(
        model_input, model_output, params={"score_hours": config.score_hours}
    )
    window_start = min(values.index[0] for _, values in series)
    window_end = max(values.index[-1] for _, values in series)
    with mlflow_tracking.start_run(config.experiment, run_name=context.run_id[:8]) as run:
        mlflow.log_params(
            {
                **{f"model_{k}": v for k, v in model_config.items()},
                "metric": config.metric,
                "eval_hours": config.eval_hours,
                "spike_sigmas": ",".join(str(x) for x in config.spike_sigmas),
                "spikes_per_series": len(positions),
                "series": len(series),
                "window_start": window_start.isoformat(),
                "window_end": window_end.isoformat(),
                "dagster_run_id": context.run_id,
            }
        )
        mlflow.log_metrics(
            {
                **{k: v for k, v in candidate_metrics.items() if math.isfinite(v)},
                **{f"baseline_{k}": v for k, v in baseline_metrics.items() if math.isfinite(v)},
                **{
                    f"champion_{k}": v
                    for k, v in (champion_metrics or {}).items()
                    if math.isfinite(v)
                },
            }
        )
        mlflow.log_figure(
            score_distribution(*pooled["candidate"], config.threshold),
            "plots/score_distribution.png",
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DetectorModel(model_config),
            signature=signature,
            registered_model_name=name,
            pip_requirements=["mlflow", "pandas", "numpy", "scikit-learn", "torch"],
        )
        mlflow.set_tags(
            {"promotion.promote": str(decision.promote), "promotion.reason": decision.reason}
        )
        run_id = run.info.run_id
    return apply_gate(
        context,
        mlflow_tracking,
        TrainedCandidate(
            asset_key=DETECTOR_KEY,
            model_name=name,
            version=str(info.registered_model_version),
            run_id=run_id,
            decision=decision,
            champion_version=champion_version,
            promotion_metric=config.promotion_metric,
            candidate_metrics=candidate_metrics,
            baseline_metrics=baseline_metrics,
            champion_metrics=champion_metrics,
            series=len(series),
            window=(window_start, window_end),
            duration_s=time.monotonic() - started,
        ),
    )
