"""The anomaly detector fleet: fitted to every series, evaluated with injected spikes, registered
in MLflow with its fitted state."""

import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from pydantic import Field

from llmhub.ml_data import HOURLY_MART, detector_series, read_frame, read_hourly_mart
from assets.ml_models.promotion import (
    BEATS_CHAMPION_AND_BASELINE,
    CHAMPION,
    TrainedCandidate,
    apply_gate,
)
from assets.ml_models.pyfunc import FLEET_ARTIFACT, DetectorModel
from assets.resources import HubResource
from assets.resources.mlflow import MlflowResource
from ml.anomaly import Detector, DetectorResult
from ml.anomaly.base import global_scale
from ml.anomaly.feedback import tune_thresholds
from ml.anomaly.fleet import MEMBERS, DetectorSpec, Fleet, SeriesId
from ml.registry import PromotionDecision, should_promote

DETECTOR_KEY = dg.AssetKey(["ml", "anomaly_detector"])
#: Scored series per (tenant, application, model). Rates and percentiles are carried forward
#: through idle hours, and never flagged there (``fill_idle_hours``).
DETECTOR_METRICS = ["request_count", "tokens", "cost_usd", "error_rate", "latency_p95_ms"]

FALSE_POSITIVE_SCORES = """
select f.tenant_id || '/' || f.asset_id || '/' || f.request_model as series_id, f.metric,
    a.score
from analytics.anomaly_feedback f
join analytics.anomalies a using (bucket_at, tenant_id, asset_id, request_model, metric)
where f.verdict = 'false_positive' and f.bucket_at >= %s
"""


class DetectorConfig(dg.Config):
    experiment: str = Field("llmhub/anomaly_detector", description="MLflow experiment.")
    registered_model_name: str = Field(
        "llmhub-anomaly-detector", description="MLflow registered model."
    )
    members: list[str] = Field(
        list(MEMBERS), description=f"Fused detectors, a subset of {MEMBERS}."
    )
    fusion: str = Field("mean", description="mean, max or median of the members' scores.")
    threshold: float = Field(0.5, description="Alert threshold on the fused score.")
    cooldown: int = Field(64, description="Hours after an alert in which only a higher one counts.")
    shared_network: bool = Field(
        True, description="One LSTM autoencoder for the whole fleet instead of one per series."
    )
    metrics: list[str] = Field(DETECTOR_METRICS, description="Series metrics fitted and scored.")
    history_hours: int = Field(24 * 21, description="Hours of the mart read, back from its end.")
    eval_hours: int = Field(
        168,
        description="Held-out hours per series (spikes injected there); the fleet is "
        "fitted on the hours before them.",
    )
    min_train_hours: int = Field(24 * 7, description="Series with fewer training hours wait.")
    spike_sigmas: list[float] = Field(
        [3.0, 4.0, 6.0],
        description="Injected spike heights, in robust sigmas of the day-over-day noise; each "
        "series is evaluated once per height.",
    )
    score_hours: int = Field(6, description="Default hours the registered model scores.")
    feedback_ceiling: float = Field(
        0.9, description="Highest per-series threshold analyst feedback may set."
    )
    promotion_metric: str = Field(
        "auc", description="Higher-is-better metric that promotes (auc, f1, recall)."
    )

    def spec(self) -> DetectorSpec:
        return DetectorSpec(
            members=tuple(self.members),
            fusion=self.fusion,  # type: ignore[arg-type]
            threshold=self.threshold,
            cooldown=self.cooldown,
            shared_network=self.shared_network,
            min_train_points=self.min_train_hours,
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

    @classmethod
    def of(cls, flagged: np.ndarray, truth: np.ndarray) -> "Confusion":
        return cls(
            int((flagged & truth).sum()),
            int((~flagged & truth).sum()),
            int((flagged & ~truth).sum()),
            int((~flagged & ~truth).sum()),
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


@dataclass(frozen=True)
class Evaluated:
    """One detector on one held-out series with spikes at ``positions``."""

    result: DetectorResult
    truth: np.ndarray

    def confusion(self, threshold: float) -> Confusion:
        return Confusion.of(np.asarray(self.result.scores) >= threshold, self.truth)

    @property
    def spiked(self) -> np.ndarray:
        return self.result.likelihood[self.truth]

    @property
    def clean(self) -> np.ndarray:
        return self.result.likelihood[~self.truth]


def evaluate(
    fitted: Detector, held_out: pd.Series, positions: np.ndarray, height: float
) -> Evaluated:
    """Score ``held_out`` with spikes of ``height`` added at ``positions`` (``fitted`` was fitted
    on the hours before it; scoring leaves it unchanged, so one fit serves every height).

    The ranking uses the calibrated scores before the cooldown (``likelihood``): the cooldown
    zeroes the hours after an alert, which would make it depend on the spike spacing.
    """
    spiked = held_out.copy()
    spiked.iloc[positions] = spiked.iloc[positions] + height
    truth = np.zeros(len(spiked), dtype=bool)
    truth[positions] = True
    return Evaluated(fitted.score(spiked), truth)


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
    ranks = pd.Series(np.concatenate([positive, negative])).rank().to_numpy()
    n_pos, n_neg = positive.size, negative.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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


def anomaly_timeline(evaluations: Mapping[SeriesId, Evaluated], threshold: float) -> Figure:
    """Held-out hours of a few series: observed (with injected spikes), expected, flagged."""
    figure = Figure(figsize=(10, 2.6 * max(1, len(evaluations))), layout="constrained")
    FigureCanvasAgg(figure)
    for row, ((series_id, metric), evaluated) in enumerate(evaluations.items(), start=1):
        result = evaluated.result
        axes = figure.add_subplot(len(evaluations), 1, row)
        axes.plot(result.index, result.values, linewidth=1, label="observed")
        axes.plot(result.index, result.expected, linewidth=1, linestyle="--", label="expected")
        spikes = evaluated.truth
        axes.scatter(
            result.index[spikes], result.values[spikes], marker="x", color="k", label="injected"
        )
        flagged = np.asarray(result.scores) >= threshold
        axes.scatter(
            result.index[flagged],
            result.values[flagged],
            s=60,
            facecolors="none",
            edgecolors="red",
            label="flagged",
        )
        axes.set_title(f"{series_id} {metric}", fontsize="small")
        axes.legend(fontsize="x-small", loc="upper left")
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
    """The published anomaly detector: the ensemble fitted to every series, as an MLflow model.

    Grain: one fitted detector per (tenant, application, model, metric) series of
    ``marts.fct_llm_requests_hourly`` with ``min_train_hours`` of history. For the evaluation
    the fleet is fitted on all but the last ``eval_hours`` hours (one LSTM shared by the
    fleet); the published fleet is refitted on all but the newest ``score_hours``. The held-out
    hours are scored
    with synthetic spikes of several heights injected, by the candidate, by the ``RobustBaseline``
    floor and by the champion's configuration refitted on the same hours. The gate metric is
    the rank AUC of spiked vs clean hours (threshold-free); recall, precision, false-positive
    rate and F1 at the thresholds are logged too. Series with alerts an analyst marked false
    positive get a raised threshold (``ml.anomaly.feedback``), and its effect on their held-out
    hours is logged (``feedback_*``). The fitted fleet is the model's artifact: hourly scoring
    loads it and fits nothing. The `champion` alias moves when ``should_promote`` says so.
    """
    started = time.monotonic()
    with hub.connect() as conn:
        hourly = read_hourly_mart(conn, config.history_hours)
    series = detector_series(
        hourly, config.metrics, config.min_train_hours + config.eval_hours
    ).series
    if not series:
        raise dg.Failure(
            f"no series with {config.min_train_hours + config.eval_hours} hours to train on"
        )
    train = {key: values.iloc[: -config.eval_hours] for key, values in series.items()}
    held_out = {key: values.iloc[-config.eval_hours :] for key, values in series.items()}
    positions = spike_positions(config.eval_hours, config.cooldown)

    spec = config.spec()
    fleets: dict[str, Fleet] = {
        "candidate": Fleet.fit(spec, train),
        "baseline": Fleet.fit(
            DetectorSpec(
                members=("robust_baseline",),
                threshold=config.threshold,
                cooldown=config.cooldown,
                min_train_points=config.min_train_hours,
            ),
            train,
        ),
    }
    fitted_s = time.monotonic() - started
    context.log.info(f"fitted {len(fleets['candidate'])} series in {fitted_s:.0f} s")
    # The champion's configuration is refitted on the same hours and scored on the same spikes:
    # its logged metrics come from an older window, a comparison of windows, not of models.
    name = config.registered_model_name
    champion_version = mlflow_tracking.champion_version(name, CHAMPION)
    champion_spec: DetectorSpec | None = None
    if champion_version is not None:
        champion_model = mlflow_tracking.load_champion(name, CHAMPION)[0]
        champion_spec = champion_model.unwrap_python_model().spec()
        # The same configuration fitted on the same hours is the same fleet (seeded): no refit.
        fleets["champion"] = (
            fleets["candidate"] if champion_spec == spec else Fleet.fit(champion_spec, train)
        )

    # Analyst feedback: series with alerts marked false positive get a higher threshold.
    window_start = min(values.index[0] for values in series.values())
    window_end = max(values.index[-1] for values in series.values())
    with hub.connect() as conn:
        marked = read_frame(conn, FALSE_POSITIVE_SCORES, (window_start.to_pydatetime(),))
    false_positive_scores: dict[SeriesId, list[float]] = {}
    for row in marked.itertuples(index=False):
        false_positive_scores.setdefault((row.series_id, row.metric), []).append(float(row.score))
    tuned = {
        key: threshold
        for key, threshold in tune_thresholds(
            false_positive_scores, config.threshold, ceiling=config.feedback_ceiling
        ).items()
        if key in fleets["candidate"].detectors
    }
    for key, threshold in tuned.items():
        fleets["candidate"].set_threshold(key, threshold)

    evaluations: dict[str, dict[tuple[SeriesId, float], Evaluated]] = {}
    sigmas = {key: noise_scale(values) for key, values in train.items()}
    for label, fleet in fleets.items():
        shared = next((other for other in evaluations if fleets[other] is fleet), None)
        if shared is not None:
            evaluations[label] = evaluations[shared]
            continue
        evaluations[label] = {
            (key, spike_sigma): evaluate(
                detector, held_out[key], positions, spike_sigma * sigmas[key]
            )
            for key, detector in fleet.detectors.items()
            for spike_sigma in config.spike_sigmas
        }

    def summarise(label: str, tuned_thresholds: bool = True) -> dict[str, float]:
        confusion = Confusion()
        spiked, clean = [], []
        fleet = fleets[label]
        for (key, _), evaluated in evaluations[label].items():
            threshold = fleet.threshold(key) if tuned_thresholds else config.threshold
            confusion = confusion + evaluated.confusion(threshold)
            spiked.append(evaluated.spiked)
            clean.append(evaluated.clean)
        return {
            **confusion.metrics(),
            "auc": rank_auc(np.concatenate(spiked), np.concatenate(clean)),
        }

    candidate_metrics = summarise("candidate")
    baseline_metrics = summarise("baseline")
    champion_metrics = summarise("champion") if "champion" in fleets else None
    feedback_metrics = feedback_effect(evaluations["candidate"], tuned, config.threshold)
    # What is published is the same configuration refitted on every hour but the newest
    # ``score_hours`` (the next scoring run rescores those): the evaluated fleet has not seen
    # the held-out week, and scoring a week more of hours every hour would cost twice as much.
    published = Fleet.fit(
        spec, {key: values.iloc[: -config.score_hours] for key, values in series.items()}
    )
    for key, threshold in tuned.items():
        if key in published.detectors:
            published.set_threshold(key, threshold)
    marked_count = sum(map(len, false_positive_scores.values()))
    feedback_metrics["false_positives_marked"] = float(marked_count)
    decision = should_promote(
        candidate_metrics,
        champion_metrics,
        baseline_metrics,
        config.promotion_metric,
        lower_is_better=False,
    )
    if (
        not decision.promote
        and champion_spec == spec
        and should_promote(
            candidate_metrics, None, baseline_metrics, config.promotion_metric, False
        ).promote
    ):
        # The champion's own configuration ties it by construction; what is new is the fitted
        # state (newer hours, new series), which is the point of the weekly training.
        decision = PromotionDecision(
            True,
            f"same configuration as the champion, refitted on newer hours; "
            f"{config.promotion_metric}={candidate_metrics[config.promotion_metric]:.4g} beats "
            f"the baseline's {baseline_metrics[config.promotion_metric]:.4g}",
        )

    model_config = {
        "members": list(config.members),
        "fusion": config.fusion,
        "threshold": config.threshold,
        "cooldown": config.cooldown,
        "shared_network": config.shared_network,
        "min_train_points": config.min_train_hours,
        "score_hours": config.score_hours,
    }
    (example_id, example_metric), example = next(iter(series.items()))
    model_input = pd.DataFrame(
        {
            "series_id": example_id,
            "metric": example_metric,
            "bucket_at": example.index[-48:].tz_convert(None),
            "value": example.iloc[-48:].to_numpy(dtype=float),
        }
    )
    model_output = pd.DataFrame(
        {
            "series_id": example_id,
            "metric": example_metric,
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
    middle = config.spike_sigmas[len(config.spike_sigmas) // 2]
    busiest = sorted(
        (key for key in fleets["candidate"].detectors if key[1] == config.metrics[0]),
        key=lambda key: -float(series[key].sum()),
    )[:3]
    with mlflow_tracking.start_run(config.experiment, run_name=context.run_id[:8]) as run:
        mlflow.log_params(
            {
                **{f"model_{k}": v for k, v in model_config.items()},
                "metrics": ",".join(config.metrics),
                "eval_hours": config.eval_hours,
                "spike_sigmas": ",".join(str(x) for x in config.spike_sigmas),
                "spikes_per_series": len(positions),
                "series": len(fleets["candidate"]),
                "series_too_short": len(fleets["candidate"].skipped),
                "thresholds_tuned_by_feedback": len(tuned),
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
                **{f"feedback_{k}": v for k, v in feedback_metrics.items() if math.isfinite(v)},
            }
        )
        pooled = evaluations["candidate"].values()
        mlflow.log_figure(
            score_distribution(
                np.concatenate([e.spiked for e in pooled]),
                np.concatenate([e.clean for e in pooled]),
                config.threshold,
            ),
            "plots/score_distribution.png",
        )
        mlflow.log_figure(
            anomaly_timeline(
                {key: evaluations["candidate"][(key, middle)] for key in busiest},
                config.threshold,
            ),
            "plots/anomaly_timeline.png",
        )
        with tempfile.TemporaryDirectory() as tmp:
            fleet_path = Path(tmp) / "fleet.joblib"
            joblib.dump(published, fleet_path, compress=3)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=DetectorModel(model_config),
                artifacts={FLEET_ARTIFACT: str(fleet_path)},
                signature=signature,
                registered_model_name=name,
                pip_requirements=["mlflow", "pandas", "numpy", "scikit-learn", "torch", "joblib"],
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
            series=len(fleets["candidate"]),
            window=(window_start, window_end),
            duration_s=time.monotonic() - started,
        ),
    )


def feedback_effect(
    evaluations: Mapping[tuple[SeriesId, float], Evaluated],
    tuned: Mapping[SeriesId, float],
    base: float,
) -> dict[str, float]:
    """On the series whose threshold feedback raised: alerts on clean held-out hours and recall
    of the injected spikes at the base threshold and at the tuned one."""
    before, after = Confusion(), Confusion()
    for (key, _), evaluated in evaluations.items():
        if key in tuned:
            before = before + evaluated.confusion(base)
            after = after + evaluated.confusion(tuned[key])
    return {
        "series_tuned": float(len(tuned)),
        "clean_alerts_before": float(before.false_positives),
        "clean_alerts_after": float(after.false_positives),
        "recall_before": before.metrics()["recall"],
        "recall_after": after.metrics()["recall"],
    }
